// Domain errors say what went wrong in the domain's terms; src/api/errors.ts alone turns a kind into an
// HTTP status, so the domains stay unaware of HTTP.
export type DomainErrorKind =
  /** The request itself is wrong (bad field, too many rows, unknown reference in the body). */
  | 'invalid'
  | 'forbidden'
  | 'not_found'
  /** The request is fine but the current state refuses it (already exists, still in use, finished). */
  | 'conflict'
  | 'too_large'
  /** Well-formed but contradicting an earlier request (an idempotency key reused for another request). */
  | 'unprocessable'
  /** A backing service (the queue) refused; the work is recorded and will run once it is back. */
  | 'unavailable';

export class DomainError extends Error {
  constructor(
    readonly kind: DomainErrorKind,
    readonly code: string,
    message: string,
    readonly details: unknown = null,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}

export const badRequest = (code: string, message: string, details: unknown = null) => new DomainError('invalid', code, message, details);
export const notFound = (what: string, details: unknown = null) => new DomainError('not_found', 'not_found', `${what} not found`, details);
export const conflict = (code: string, message: string, details: unknown = null) => new DomainError('conflict', code, message, details);
export const forbidden = (message: string) => new DomainError('forbidden', 'forbidden', message);
export const tooLarge = (code: string, message: string, details: unknown = null) => new DomainError('too_large', code, message, details);
export const unavailable = (code: string, message: string, details: unknown = null) => new DomainError('unavailable', code, message, details);
