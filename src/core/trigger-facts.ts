/**
 * What the triggering event says about the incident: when it was detected and where. In a reusable workflow the
 * event is the caller's — a failed deploy's `workflow_run` (its run page, the time it concluded) or the `/rollback`
 * comment (its link, the time it was written). Anything else gives nothing, and the incident falls back to assess.
 */
export interface TriggerFacts {
  detectedAt?: string
  failedRunUrl?: string
  triggerUrl?: string
}

interface EventShape {
  workflow_run?: { html_url?: unknown; updated_at?: unknown; conclusion?: unknown }
  comment?: { html_url?: unknown; created_at?: unknown }
}

const text = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)
const time = (v: unknown): string | undefined => {
  const s = text(v)
  return s !== undefined && !Number.isNaN(Date.parse(s)) ? new Date(s).toISOString() : undefined
}
const link = (v: unknown): string | undefined => {
  const s = text(v)
  return s !== undefined && /^https?:\/\/[^\s<>()]+$/.test(s) ? s : undefined
}

export function triggerFacts(event: unknown): TriggerFacts {
  if (typeof event !== 'object' || event === null) return {}
  const e = event as EventShape
  if (e.workflow_run && e.workflow_run.conclusion === 'failure')
    return { detectedAt: time(e.workflow_run.updated_at), failedRunUrl: link(e.workflow_run.html_url) }
  if (e.comment) return { detectedAt: time(e.comment.created_at), triggerUrl: link(e.comment.html_url) }
  return {}
}
