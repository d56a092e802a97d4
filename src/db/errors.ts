/**
 * The driver's error behind a failed query: the first in the chain with a SQLSTATE (or socket error code).
 * drizzle wraps the driver's error in its own (the driver's is its `cause`), so the chain is walked.
 */
function driverError(err: unknown): { code: string; constraint?: unknown } | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^([0-9A-Z]{5}|E[A-Z]+)$/.test(code)) return e as { code: string; constraint?: unknown };
  }
  return undefined;
}

/** The SQLSTATE (or socket error code) behind a failed query. */
export const databaseErrorCode = (err: unknown): string | undefined => driverError(err)?.code;

/** The constraint a unique violation (23505) broke. */
export function violatedUnique(err: unknown): string | undefined {
  const e = driverError(err);
  return e?.code === '23505' && typeof e.constraint === 'string' ? e.constraint : undefined;
}

/**
 * Whether PostgreSQL refused the data (SQLSTATE class 22 data exception or 23 integrity violation), as
 * opposed to being unreachable or overloaded: only refused data is worth isolating row by row.
 */
export const isDataError = (err: unknown) => /^2[23]/.test(databaseErrorCode(err) ?? '');

/** Whether the database could not be reached at all (connection refused, reset, shut down). */
export const isUnreachable = (err: unknown) => {
  const code = databaseErrorCode(err) ?? '';
  if (/^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|57P0[1-3]|08[0-9A-Z]{3})$/.test(code)) return true;
  // node-postgres reports a connection cut under a query, or a pooled client found dead, by message only.
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const message = (e as { message?: unknown }).message;
    if (typeof message === 'string' && /Connection terminated|Client has encountered a connection error|connection is closed|timeout exceeded when trying to connect|Query read timeout/i.test(message)) return true;
  }
  return false;
};

/** The name of the constraint a failed statement violated (a unique index, a foreign key), if any. */
export function violatedConstraint(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const constraint = (e as { constraint?: unknown }).constraint;
    if (typeof constraint === 'string') return constraint;
  }
  return undefined;
}
