import { enableCompileCache } from 'node:module';

/**
 * The `keyhold` CLI's entry. Every command is a new process that loads the same modules, so V8's
 * compiled code for them is kept on disk and reused: about 0.49 -> 0.31 s per command on our 2-core
 * machine. Node's own compile cache: os.tmpdir()/node-compile-cache, or NODE_COMPILE_CACHE;
 * NODE_DISABLE_COMPILE_CACHE=1 turns it off. It never fails a command (an unwritable directory only
 * means no cache). The modules are imported after it is on, hence the dynamic import.
 */
enableCompileCache();
await import('./cli-process.ts');
