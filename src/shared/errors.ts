// Domain errors carry the HTTP-facing code and status so the API's one error handler can render them;
// domains stay unaware of fastify.
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown = null,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export const badRequest = (code: string, message: string, details: unknown = null) => new AppError(400, code, message, details);
export const notFound = (what: string, details: unknown = null) => new AppError(404, 'not_found', `${what} not found`, details);
export const conflict = (code: string, message: string, details: unknown = null) => new AppError(409, code, message, details);
export const forbidden = (message: string) => new AppError(403, 'forbidden', message);
