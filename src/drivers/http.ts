/** Small HTTP probes over global fetch, each with its own deadline. */
export interface HttpProbe {
  ok: boolean
  status: number
  /** Parsed JSON body, when the body was JSON. */
  json?: unknown
  latencyMs: number
  error?: string
}

export async function probe(url: string, timeoutMs: number, signal?: AbortSignal): Promise<HttpProbe> {
  const started = performance.now()
  const signals = [AbortSignal.timeout(timeoutMs), ...(signal ? [signal] : [])]
  try {
    const res = await fetch(url, { signal: AbortSignal.any(signals), headers: { connection: 'close' } })
    const text = await res.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { ok: res.ok, status: res.status, json, latencyMs: performance.now() - started }
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : ''
    return {
      ok: false,
      status: 0,
      latencyMs: performance.now() - started,
      error: `${e instanceof Error ? e.message : String(e)}${cause}`
    }
  }
}

/** A string field of a JSON object body, e.g. `environment` of /health. */
export function field(json: unknown, key: string): unknown {
  return json && typeof json === 'object' ? (json as Record<string, unknown>)[key] : undefined
}
