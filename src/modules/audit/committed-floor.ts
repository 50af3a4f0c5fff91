import type { ChainSegment } from './chain.ts';

/** An event this process knows was committed: its place and its hash. */
export interface CommittedEvent {
  seq: number;
  hash: string;
}

/**
 * What this process knows it committed to the chain, for verify and the checkpointer to hold the
 * database to: the highest committed event (seq and hash), fed by its group commits, by its
 * writes' transactions once they commit (appendInTx), and by every head its own group commits read
 * under the head's lock (a write's transaction may read its own uncommitted appends there). A seq alone could be grown back over: a tail cut, the head rewound, and new events appended
 * past the old end. So the hash is kept too, and a commit of this process that lands on or right
 * after a place it knows with another event there is a rewind: that event is kept for good
 * (`rewound`) and no later commit lifts it.
 */
export function createCommittedFloor() {
  let highest: CommittedEvent | null = null;
  let rewound: CommittedEvent | null = null;

  function flag(): void {
    rewound ??= highest;
  }

  /** `head`, read under its lock, is behind what is known committed, or at it with another event. */
  function movedBack(head: CommittedEvent): boolean {
    return highest !== null && (head.seq < highest.seq || (head.seq === highest.seq && head.hash !== highest.hash));
  }

  return {
    /** A commit of this process (group commit, or a write's transaction that has committed) appended `segment`. */
    committed(segment: ChainSegment): void {
      if (highest) {
        // Two commits never share a seq (the same commit may be known already, from a head read at its
        // end), and a commit starting right after a known event links to it.
        const within = segment.first <= highest.seq && highest.seq <= segment.last;
        if (within && !(highest.seq === segment.last && highest.hash === segment.lastHash)) flag();
        else if (segment.first === highest.seq + 1 && segment.prevHash !== highest.hash) flag();
      }
      if (!highest || segment.last > highest.seq) highest = { seq: segment.last, hash: segment.lastHash };
    },

    /** The log's own transaction read the head under its lock, before appending: every event up to it is committed, and the head never moves back. */
    headRead(head: CommittedEvent): void {
      if (movedBack(head)) flag();
      else if (!highest || head.seq > highest.seq) highest = { ...head };
    },

    /**
     * A write's transaction read the head under its lock. It may be past what committed: the same
     * transaction may have appended before (still uncommitted, and may roll back), so it cannot lift
     * the floor (its commit does, through `committed`). It can still show the head moved back: a
     * transaction's own appends only take the head forward from what committed.
     */
    headReadInTx(head: CommittedEvent): void {
      if (movedBack(head)) flag();
    },

    /** The highest seq known to be committed (0: none yet). */
    seq(): number {
      return highest?.seq ?? 0;
    },

    /** The events the log must still hold as they were committed: the highest, and a place found rewound. */
    known(): CommittedEvent[] {
      return [...(rewound ? [rewound] : []), ...(highest && highest.seq !== rewound?.seq ? [highest] : [])];
    },
  };
}

export type CommittedFloor = ReturnType<typeof createCommittedFloor>;
