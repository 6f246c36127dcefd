import type { Logger } from '../core/logger'
import { type Channel, type NotifyConfig } from '../core/notify'
import { expandEnv } from './config-file'
import { sleep } from './sleep'

/** An error's message and its cause's (fetch's "fetch failed" says nothing alone), from any realm. */
function describe(e: unknown): string {
  const msg = (x: unknown): string | undefined =>
    x && typeof x === 'object' && 'message' in x ? String(x.message) : undefined
  const cause = e && typeof e === 'object' && 'cause' in e ? msg(e.cause) : undefined
  return `${msg(e) ?? String(e)}${cause ? `: ${cause}` : ''}`
}

export interface Delivery {
  channel: Channel['kind']
  ok: boolean
  attempts: number
  detail: string
}

/** The channel's URL with its ${VAR} expanded; masked in every log from here on. */
function urlOf(channel: Channel, log: Logger): string {
  const raw = channel.kind === 'webhook' ? channel.url : channel.webhook
  const url = expandEnv(raw, `notify.channels (${channel.kind})`, process.env, v => v)
  log.mask(url)
  return url
}

/**
 * POSTs one JSON body to one channel: retried on a network error, a 429 or a 5xx, with backoff doubling
 * from notify.backoffMs; never throws — the outcome is returned (a notification must not fail a rollback).
 */
export async function deliver(
  channel: Channel,
  body: unknown,
  cfg: NotifyConfig,
  log: Logger
): Promise<Delivery> {
  let url: string
  try {
    url = urlOf(channel, log)
  } catch (e) {
    return {
      channel: channel.kind,
      ok: false,
      attempts: 0,
      detail: describe(e)
    }
  }
  let detail = ''
  for (let attempt = 1; attempt <= cfg.retries + 1; attempt++) {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(cfg.timeoutMs)
      })
      await res.text().catch(() => '')
      if (res.ok) return { channel: channel.kind, ok: true, attempts: attempt, detail: `HTTP ${res.status}` }
      detail = `HTTP ${res.status}`
      if (res.status < 500 && res.status !== 429)
        return { channel: channel.kind, ok: false, attempts: attempt, detail }
    } catch (e) {
      detail = describe(e)
    }
    if (attempt <= cfg.retries) await sleep(cfg.backoffMs * 2 ** (attempt - 1))
  }
  return { channel: channel.kind, ok: false, attempts: cfg.retries + 1, detail }
}
