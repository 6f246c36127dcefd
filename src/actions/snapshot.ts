import { OperationError } from '../core/errors'
import { takeSnapshot } from '../engine/snapshot'
import { type ActionContext, type ActionOutcome } from './action-runner'

/** snapshot: a backup of the service now, verified against its own manifest before it is reported. */
export async function runSnapshot(ctx: ActionContext<'snapshot'>): Promise<ActionOutcome<'snapshot'>> {
  const service = ctx.service()
  const info = await takeSnapshot(service, { safety: ctx.boolean('safety') })
  const problems = await service.store.verify(info.id)
  if (problems.length)
    throw new OperationError(
      `backup ${info.id} failed verification: ${problems.join('; ')}`,
      'backup_corrupt'
    )
  return {
    decision: 'snapshot_taken',
    reasonCode: 'ok',
    outputs: { backup_id: info.id },
    summary: `## 📦 backout snapshot ${info.id}\n\n${info.manifest.files.length} files, ${info.sizeBytes} bytes, every checksum verified.`
  }
}
