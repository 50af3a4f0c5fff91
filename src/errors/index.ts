export { errorCatalogue, errorCodes, type ErrorCode } from './catalogue.ts';
export { KeyholdError, fail, isKeyholdError } from './keyhold-error.ts';
