/**
 * Typed failures. Each kind maps to one CLI exit code and one action outcome, in one place
 * (`exitCodeFor`). A UserError is the user's to fix: it says what was wrong, where, and what to do,
 * and it is raised before anything changes.
 */
export const EXIT = { ok: 0, failed: 1, refused: 2, locked: 3 } as const

/** Bad input or a safety check that failed before anything changed: exit 2. */
export class UserError extends Error {
  override readonly name: string = 'UserError'
  constructor(
    message: string,
    readonly reasonCode = 'refused'
  ) {
    super(message)
  }
}

/** Another operation holds the service's lock: exit 3. */
export class LockHeldError extends Error {
  override readonly name: string = 'LockHeldError'
  readonly reasonCode = 'lock_held'
}

/** The operation ran and did not reach its goal: exit 1. */
export class OperationError extends Error {
  override readonly name: string = 'OperationError'
  constructor(
    message: string,
    readonly reasonCode = 'failed'
  ) {
    super(message)
  }
}

export function exitCodeFor(error: unknown): number {
  if (error instanceof UserError) return EXIT.refused
  if (error instanceof LockHeldError) return EXIT.locked
  return EXIT.failed
}

export function reasonCodeFor(error: unknown): string {
  if (error instanceof UserError || error instanceof OperationError || error instanceof LockHeldError)
    return error.reasonCode
  return 'internal_error'
}

/** A message for anything thrown, including values that are not Errors. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message
  if (typeof error === 'string') return error
  try {
    return `non-error value thrown: ${JSON.stringify(error)}`
  } catch {
    return `non-error value thrown: ${String(error)}`
  }
}
