/** A time as PostgreSQL prints it ("2024-06-01 10:00:00.123456 UTC", "… +02") as ISO-8601 (milliseconds). */
export function pgTime(text: string): string {
  const m = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*(.*)$/.exec(text.trim())
  if (!m) return new Date(text).toISOString()
  const zone = (m[3] ?? '').trim()
  const offset =
    zone === '' || zone === 'UTC' || zone === 'GMT' ? 'Z' : /^[+-]\d{2}(:?\d{2})?$/.test(zone) ? zone : 'Z'
  const frac = m[2]?.includes('.') ? m[2].replace(/(\.\d{3})\d*/, '$1') : m[2]
  const d = new Date(`${m[1]}T${frac}${offset.length === 3 ? `${offset}:00` : offset}`)
  if (Number.isNaN(d.getTime())) throw new Error(`cannot parse PostgreSQL time "${text}"`)
  return d.toISOString()
}
