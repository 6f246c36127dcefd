import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { UserError } from '../../core/errors'
import { runCommand } from '../exec'
import { pgTime } from './pg-time'

/**
 * The archived WAL as PostgreSQL's recovery reads it: along one timeline's history. After a point-in-time recovery
 * the cluster runs on a new timeline whose history file (0000000N.history, archived) says where it branched off
 * its parent; the parent's WAL after that point is an abandoned history a recovery along the new timeline never
 * replays. Continuity, reach and "is the target on an abandoned timeline" are all judged along that history.
 */

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/

export function segInfo(name: string, segSize: number): { tli: number; segNo: number } {
  const m = SEGMENT.exec(name)
  if (!m?.[1] || !m[2] || !m[3]) throw new Error(`not a WAL segment name: ${name}`)
  const perId = 0x100000000 / segSize
  return { tli: parseInt(m[1], 16), segNo: parseInt(m[2], 16) * perId + parseInt(m[3], 16) }
}

export function segName(tli: number, segNo: number, segSize: number): string {
  const perId = 0x100000000 / segSize
  const h = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0')
  return h(tli) + h(Math.floor(segNo / perId)) + h(segNo % perId)
}

export function lsnToNumber(lsn: string): number {
  const [hi, lo] = lsn.split('/')
  return parseInt(hi ?? '0', 16) * 0x100000000 + parseInt(lo ?? '0', 16)
}

function tliHex(tli: number): string {
  return tli.toString(16).toUpperCase().padStart(8, '0')
}

/** One ancestor of a timeline: it held the WAL before switchLsn, where its child branched off. */
export interface TimelineSwitch {
  tli: number
  switchLsn: number
}

/** The ancestors of `tli` from its history file in the archive, oldest first; [] for a timeline without one. */
export function timelineHistory(archiveDir: string, tli: number): TimelineSwitch[] {
  const file = path.join(archiveDir, `${tliHex(tli)}.history`)
  if (tli === 1 || !existsSync(file)) return []
  const out: TimelineSwitch[] = []
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^\s*(\d+)\s+([0-9A-F]+\/[0-9A-F]+)/i.exec(line)
    if (m?.[1] && m[2]) out.push({ tli: Number(m[1]), switchLsn: lsnToNumber(m[2]) })
  }
  return out
}

/** The newest timeline with a history file in the archive (1 when there is none). */
export function newestTimeline(archiveDir: string): number {
  const tlis = readdirSync(archiveDir)
    .map(n => /^([0-9A-F]{8})\.history$/.exec(n)?.[1])
    .filter((x): x is string => !!x)
    .map(t => parseInt(t, 16))
  return Math.max(1, ...tlis)
}

interface Commit {
  lsn: number
  time: string
}

/** The commits (and aborts) pg_waldump finds in one archived segment, in WAL order. */
async function commitsIn(binDir: string, archiveDir: string, segment: string): Promise<Commit[]> {
  const file = path.join(archiveDir, segment)
  if (!existsSync(file)) return []
  const res = await runCommand([path.join(binDir, 'pg_waldump'), '-r', 'Transaction', file, file])
  const out: Commit[] = []
  for (const m of res.stdout.matchAll(
    /lsn: ([0-9A-F]+\/[0-9A-F]+),.*desc: (?:COMMIT|ABORT) (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \S+)/gi
  ))
    if (m[1] && m[2]) out.push({ lsn: lsnToNumber(m[1]), time: pgTime(m[2]) })
  return out
}

export interface WalContinuity {
  /** No missing segment between fromSegment and the newest archived one on the timeline path. */
  continuous: boolean
  fromSegment: string
  /** The last segment of the unbroken run from fromSegment. */
  lastSegment?: string
  /** The first missing segment, when a later one exists (a gap). */
  missing?: string
  /** The timeline recovery follows. */
  timeline: number
  /** The newest commit (or abort) in the unbroken run: recovery can stop at any time before it. ISO-8601. */
  latestCommit?: string
  /** When toTime was given: whether the unbroken WAL holds a commit after it (needed to stop at it). */
  reachesTarget?: boolean
  /** When toTime was given and it falls in WAL only an abandoned timeline holds: which, and when. */
  abandoned?: { timeline: number; from: string; until?: string }
  problems: string[]
}

/**
 * Whether the archived WAL runs unbroken from fromSegment (the base backup's start segment) along the history of
 * `timeline` (default: the newest in the archive) — and, when toTime is given, whether it holds a commit after
 * toTime (which PostgreSQL needs to stop at that time) and whether toTime is on the path at all: a time at which
 * the data only existed on an abandoned timeline (after the branch point, before the child's first commit) is
 * not reachable along this one.
 */
export async function checkWalContinuity(
  archiveDir: string,
  fromSegment: string,
  toTime: Date | string | undefined,
  binDir: string,
  options: { timeline?: number } = {}
): Promise<WalContinuity> {
  const problems: string[] = []
  if (!existsSync(archiveDir)) throw new UserError(`WAL archive ${archiveDir} does not exist`, 'wal_missing')
  const segments = new Set(readdirSync(archiveDir).filter(n => SEGMENT.test(n)))
  const sample = segments.has(fromSegment) ? fromSegment : [...segments][0]
  const segSize = sample ? statSync(path.join(archiveDir, sample)).size : 16 * 1024 * 1024
  if (!Number.isInteger(Math.log2(segSize))) problems.push(`WAL segment ${sample} has an odd size ${segSize}`)
  const from = segInfo(fromSegment, segSize)

  let timeline = options.timeline ?? newestTimeline(archiveDir)
  let history = timeline === from.tli ? [] : timelineHistory(archiveDir, timeline)
  if (timeline !== from.tli && !history.some(h => h.tli === from.tli)) {
    problems.push(
      `timeline ${timeline} does not descend from the base backup's timeline ${from.tli}` +
        (history.length ? '' : ` (no ${tliHex(timeline)}.history in ${archiveDir})`)
    )
    timeline = from.tli
    history = []
  }
  // Only the part of the history from the base backup's timeline on matters.
  const path_ = history.slice(history.findIndex(h => h.tli === from.tli))
  const tliFor = (segNo: number): number => {
    for (const p of path_) if (segNo < Math.floor(p.switchLsn / segSize)) return p.tli
    return timeline
  }

  let maxSeg = from.segNo
  for (const n of segments) {
    const s = segInfo(n, segSize)
    if (s.segNo > maxSeg && s.tli === tliFor(s.segNo)) maxSeg = s.segNo
  }
  let last: string | undefined
  let missing: string | undefined
  for (let s = from.segNo; s <= maxSeg; s++) {
    const name = segName(tliFor(s), s, segSize)
    if (!segments.has(name)) {
      missing = name
      break
    }
    last = name
  }
  if (!last) problems.push(`the base backup's first WAL segment ${fromSegment} is not in ${archiveDir}`)
  else if (missing)
    problems.push(
      `WAL gap: ${missing} (timeline ${tliFor(segInfo(missing, segSize).segNo)}) is missing from ${archiveDir}; recovery cannot go past ${last}`
    )

  let latestCommit: string | undefined
  if (last) {
    const lastNo = segInfo(last, segSize).segNo
    for (let s = lastNo; s >= from.segNo && !latestCommit && lastNo - s < 8; s--) {
      const commits = await commitsIn(binDir, archiveDir, segName(tliFor(s), s, segSize))
      for (const c of commits) if (!latestCommit || c.time > latestCommit) latestCommit = c.time
    }
  }
  const target = toTime === undefined ? undefined : new Date(toTime)
  let reachesTarget = target ? latestCommit !== undefined && new Date(latestCommit) > target : undefined
  let abandoned: WalContinuity['abandoned']
  if (target) {
    abandoned = await abandonedAt(binDir, archiveDir, path_, timeline, segSize, target)
    if (abandoned) {
      reachesTarget = false
      problems.push(
        `${target.toISOString()} is on abandoned timeline ${abandoned.timeline}: the cluster's timeline ${timeline} ` +
          `branched off it before its commit of ${abandoned.from}, and its own first commit after the branch is ` +
          `${abandoned.until ?? 'not archived yet'}; what timeline ${abandoned.timeline} held in between is not on the ` +
          `cluster's history — choose a time before ${abandoned.from}` +
          (abandoned.until ? ` or after ${abandoned.until}` : '')
      )
    } else if (!reachesTarget)
      problems.push(
        `the archived WAL ends before ${target.toISOString()} (newest commit: ${latestCommit ?? 'none'}) — ` +
          'choose an earlier time, or make the running cluster archive its current WAL first'
      )
  }
  return {
    continuous: !missing && !!last,
    fromSegment,
    lastSegment: last,
    missing,
    timeline,
    latestCommit,
    reachesTarget,
    ...(abandoned ? { abandoned } : {}),
    problems
  }
}

/** The first commit at or after `lsn` on timeline `tli` (looking at up to 8 archived segments). */
async function firstCommitFrom(
  binDir: string,
  archiveDir: string,
  tli: number,
  lsn: number,
  segSize: number
): Promise<string | undefined> {
  const first = Math.floor(lsn / segSize)
  for (let s = first; s < first + 8; s++) {
    const name = segName(tli, s, segSize)
    if (!existsSync(path.join(archiveDir, name))) return undefined
    const c = (await commitsIn(binDir, archiveDir, name)).find(x => x.lsn >= lsn)
    if (c) return c.time
  }
  return undefined
}

/** Whether the target falls in WAL that only an abandoned branch of the path holds. */
async function abandonedAt(
  binDir: string,
  archiveDir: string,
  path_: TimelineSwitch[],
  timeline: number,
  segSize: number,
  target: Date
): Promise<WalContinuity['abandoned']> {
  for (let i = 0; i < path_.length; i++) {
    const p = path_[i]!
    const child = path_[i + 1]?.tli ?? timeline
    const from = await firstCommitFrom(binDir, archiveDir, p.tli, p.switchLsn, segSize)
    if (!from || target < new Date(from)) continue
    const until = await firstCommitFrom(binDir, archiveDir, child, p.switchLsn, segSize)
    if (!until || target < new Date(until)) return { timeline: p.tli, from, ...(until ? { until } : {}) }
  }
  return undefined
}

/**
 * The timeline a data directory is on (pg_controldata: the latest checkpoint's), i.e. the history a recovery that
 * replaces it must follow; undefined when it cannot be read (no cluster there).
 */
export async function dataDirTimeline(dataDir: string, binDir: string): Promise<number | undefined> {
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) return undefined
  const res = await runCommand([path.join(binDir, 'pg_controldata'), dataDir], {
    env: { ...process.env, LC_ALL: 'C' }
  })
  const m = /^Latest checkpoint's TimeLineID:\s+(\d+)$/m.exec(res.stdout)
  return res.code === 0 && m?.[1] ? Number(m[1]) : undefined
}
