import type { Config } from '../core/config'
import type { Logger } from '../core/logger'
import { type NotifyEvent, eventOf, notificationPayload } from '../core/notify'
import type { RunRecord } from '../core/run-record'
import { type Delivery, deliver } from '../drivers/notify'

export interface RollbackNotifier {
  /** Sends the end notification (after the start one is through); never throws. */
  finish(): Promise<Delivery[]>
}

const NONE: RollbackNotifier = { finish: () => Promise.resolve([]) }

/**
 * The stakeholder notifications of one rollback run: `start` goes out at once without delaying the
 * rollback; `success` or `failure` when it ends. Each failed delivery is reported as a warning — a
 * notification never fails a rollback.
 */
export function notifyRollback(config: Config, record: RunRecord, log: Logger): RollbackNotifier {
  const cfg = config.notify
  if (!cfg || record.operation !== 'rollback' || record.dryRun) return NONE
  const send = async (event: NotifyEvent, snapshot: RunRecord): Promise<Delivery[]> => {
    if (!cfg.on.includes(event)) return []
    const results = await Promise.all(
      cfg.channels.map(c => deliver(c, notificationPayload(c, snapshot, event, cfg.contact), cfg, log))
    )
    for (const r of results)
      if (r.ok) log.info(`notified ${r.channel} (${event})`)
      else
        log.warn(
          `notification (${event}) to ${r.channel} failed after ${r.attempts} attempt(s): ${r.detail} — the rollback is not affected; tell stakeholders another way`
        )
    return results
  }
  const started = send('start', structuredClone({ ...record, status: 'running' as const }))
  return {
    async finish() {
      const first = await started
      return [...first, ...(await send(eventOf(record), record))]
    }
  }
}
