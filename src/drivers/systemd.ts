import type { Color, Config } from '../core/config'
import { OperationError, UserError, messageOf } from '../core/errors'
import { runCommand, type CommandResult } from './exec'
import type { Runtime } from './runtime'
import { sleep } from './sleep'

/**
 * The `systemd` runtime (the VBRPG runbook's production setup): each colour is a systemd unit running from
 * a git checkout. systemctl starts, stops and reads the unit, journalctl gives its logs, git moves the
 * checkout to a recorded commit — the runbook's "stop the unit, check out the previous commit, start the
 * unit". With `targets.<color>.systemd.exec` every command runs behind that prefix (`ssh host`,
 * `docker exec ctr`), so the systemd may live on another machine.
 */

export interface SystemdRuntime extends Runtime {
  readonly kind: 'systemd'
  /** The commit the colour's checkout is on (`git rev-parse HEAD`), full hash. */
  gitCommit(color: Color): Promise<string>
  /**
   * Moves the colour's checkout to `commit` (detached). Refuses — a UserError, nothing changed — while the
   * unit runs, when the work tree has uncommitted changes, or when the commit is not in the repository.
   */
  checkout(color: Color, commit: string): Promise<{ from: string; to: string; detail: string }>
  /**
   * checkout's checks without the change and without the running-unit check (for a pre-flight while the
   * unit still runs): the current and the resolved commit, or the UserError checkout would raise.
   */
  verifyCheckout(color: Color, commit: string): Promise<{ from: string; to: string }>
  /** The unit, its checkout and commit (the pin snapshot records in images.txt); [] without gitDir. */
  images(color: Color): Promise<Array<{ service: string; image: string; pin: string }>>
  /** The unit's last `lines` journal lines, oldest first. */
  journal(color: Color, lines: number): Promise<string[]>
}

export interface SystemdRuntimeOptions {
  /** How often state is polled while starting and stopping (default 200 ms). */
  pollMs?: number
  /** How long start waits for the unit to become active (default 60 s). */
  startTimeoutMs?: number
  /** After it is active, the unit must stay active with the same main PID this long (default 1 s). */
  settleMs?: number
}

type Spec = NonNullable<Config['targets']['blue']['systemd']>

const PROPS = [
  'LoadState',
  'ActiveState',
  'SubState',
  'MainPID',
  'ExecMainStartTimestamp',
  'Result',
  'NRestarts'
]
type Props = Record<(typeof PROPS)[number], string>

/** Unit names as systemd allows them (escapes are `\x2d` and the like). */
const UNIT_NAME = /^[A-Za-z0-9:_.@\\-]+$/
/** A commit, tag or revision such as main~1 — never an option, nothing a remote shell would expand. */
const REVISION = /^[A-Za-z0-9][A-Za-z0-9._/~^-]*$/
/** A path that passes through a remote shell (ssh joins its arguments) unchanged. */
const SAFE_PATH = /^[A-Za-z0-9._/@+-]+$/

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)}s`

function tail(result: CommandResult, n = 5): string {
  return (result.stderr || result.stdout).trim().split('\n').slice(-n).join('\n')
}

export function createSystemdRuntime(config: Config, options: SystemdRuntimeOptions = {}): SystemdRuntime {
  const pollMs = options.pollMs ?? 200
  const startTimeoutMs = options.startTimeoutMs ?? 60000
  const settleMs = options.settleMs ?? 1000

  const spec = (color: Color): Spec => {
    const s = config.targets[color].systemd
    if (!s)
      throw new UserError(`targets.${color}.systemd is missing — the systemd runtime needs it`, 'bad_config')
    if (!UNIT_NAME.test(s.unit))
      throw new UserError(
        `targets.${color}.systemd.unit: "${s.unit}" is not a systemd unit name — use e.g. vbrpg-backend-${color}.service`,
        'bad_config'
      )
    return s
  }
  const where = (s: Spec): string => (s.exec ? ` (through ${s.exec.join(' ')})` : '')

  const run = async (s: Spec, argv: string[], timeoutMs = 30000): Promise<CommandResult> => {
    const full = [...(s.exec ?? []), ...argv]
    try {
      return await runCommand(full, { timeoutMs })
    } catch (e) {
      throw new OperationError(`${full.join(' ')}: ${messageOf(e)}`, 'systemd_unreachable')
    }
  }
  const checked = async (s: Spec, argv: string[], timeoutMs?: number): Promise<string> => {
    const r = await run(s, argv, timeoutMs)
    if (r.code !== 0) throw new OperationError(`${argv.join(' ')}${where(s)} exited ${r.code}: ${tail(r)}`)
    return r.stdout
  }

  const show = async (s: Spec): Promise<Props> => {
    const out = await checked(s, ['systemctl', 'show', '-p', PROPS.join(','), '--', s.unit])
    const props: Props = {}
    for (const line of out.split('\n')) {
      const eq = line.indexOf('=')
      if (eq > 0) props[line.slice(0, eq)] = line.slice(eq + 1)
    }
    return props
  }
  const loaded = async (color: Color, s: Spec): Promise<Props> => {
    const p = await show(s)
    if (p.LoadState === 'not-found')
      throw new UserError(
        `targets.${color}.systemd.unit: ${s.unit} is not installed${where(s)} — install the unit file ` +
          `(/etc/systemd/system/${s.unit}, then systemctl daemon-reload) or fix the name`,
        'bad_config'
      )
    return p
  }
  const isRunning = (p: Props): boolean => p.ActiveState === 'active' || p.ActiveState === 'reloading'
  const isStopped = (p: Props): boolean => p.ActiveState === 'inactive' || p.ActiveState === 'failed'
  const describe = (p: Props): string => {
    const pid = Number(p.MainPID ?? 0)
    let text = `${p.ActiveState ?? 'unknown'} (${p.SubState ?? 'unknown'})`
    if (pid > 0) text += ` pid ${pid}`
    if (isRunning(p) && p.ExecMainStartTimestamp) text += ` since ${p.ExecMainStartTimestamp}`
    if (!isRunning(p) && p.Result && p.Result !== 'success') text += `, result ${p.Result}`
    return text
  }
  const journalOf = async (s: Spec, lines: number): Promise<string[]> => {
    const out = await checked(s, [
      'journalctl',
      '--quiet',
      '--no-pager',
      '--output=short-iso',
      '-n',
      String(lines),
      '-u',
      s.unit
    ])
    return out.split('\n').filter(l => l !== '' && !l.startsWith('-- '))
  }
  const journalTail = async (s: Spec): Promise<string> => {
    try {
      const lines = await journalOf(s, 10)
      return lines.length ? `\nlast journal lines:\n${lines.join('\n')}` : ''
    } catch {
      return ''
    }
  }

  const gitDir = (color: Color, s: Spec): string => {
    if (!s.gitDir)
      throw new UserError(
        `targets.${color}.systemd.gitDir is not set — set it to the checkout ${s.unit} runs from (e.g. /opt/vbrpg)`,
        'bad_config'
      )
    if (s.exec && !SAFE_PATH.test(s.gitDir))
      throw new UserError(
        `targets.${color}.systemd.gitDir: "${s.gitDir}" has characters a remote shell would change — ` +
          'with systemd.exec use a path of letters, digits and ._/@+-',
        'bad_config'
      )
    return s.gitDir
  }
  const head = async (color: Color, s: Spec, dir: string): Promise<string> => {
    const r = await run(s, ['git', '-C', dir, 'rev-parse', '--verify', 'HEAD'])
    if (r.code !== 0)
      throw new UserError(
        `targets.${color}.systemd.gitDir: ${dir} is not a git checkout with a commit${where(s)} (${tail(r, 1)}) — ` +
          'point gitDir at the checkout the unit runs from',
        'bad_config'
      )
    return r.stdout.trim()
  }

  /** The checks a checkout makes before it changes anything: a revision, a clean tree, a known commit. */
  const verify = async (
    color: Color,
    s: Spec,
    dir: string,
    commit: string
  ): Promise<{ from: string; to: string }> => {
    if (!REVISION.test(commit))
      throw new UserError(
        `checkout ${color}: "${commit}" is not a commit — give a commit hash, a tag or a revision such as main~1`,
        'bad_commit'
      )
    const from = await head(color, s, dir)
    const dirty = await checked(s, ['git', '-C', dir, 'status', '--porcelain', '--untracked-files=no'])
    if (dirty.trim() !== '') {
      const files = dirty.trimEnd().split('\n')
      throw new UserError(
        `checkout ${color}: ${dir} has uncommitted changes (${files.length}: ${files
          .slice(0, 5)
          .map(f => f.trim())
          .join(', ')}${files.length > 5 ? ', …' : ''}) — commit or stash them (git -C ${dir} stash), ` +
          `or discard them (git -C ${dir} checkout -- .), then run again`,
        'dirty_worktree'
      )
    }
    const exists = await run(s, ['git', '-C', dir, 'cat-file', '-e', `${commit}^{commit}`])
    if (exists.code !== 0)
      throw new UserError(
        `checkout ${color}: ${commit} is not a commit in ${dir}${where(s)} — check the recorded commit, ` +
          `or fetch it first (git -C ${dir} fetch origin)`,
        'unknown_commit'
      )
    const to = (await checked(s, ['git', '-C', dir, 'rev-parse', '--verify', `${commit}^{commit}`])).trim()
    return { from, to }
  }

  return {
    kind: 'systemd',

    async state(color) {
      const s = spec(color)
      const p = await show(s)
      if (p.LoadState === 'not-found') return { running: false, detail: `unit ${s.unit} not found` }
      return { running: isRunning(p), detail: describe(p) }
    },

    async start(color) {
      const s = spec(color)
      const before = await loaded(color, s)
      if (isRunning(before)) return `already running: ${describe(before)}`
      const r = await run(s, ['systemctl', 'start', '--', s.unit], startTimeoutMs)
      if (r.code !== 0)
        throw new OperationError(
          `systemctl start ${s.unit}${where(s)} failed (exit ${r.code}): ${tail(r)}${await journalTail(s)}`,
          'start_failed'
        )
      const deadline = Date.now() + startTimeoutMs
      for (;;) {
        const p = await show(s)
        if (isRunning(p)) {
          // A service that dies right after it starts (Type=simple) is "active" for a moment: it must stay up.
          await sleep(settleMs)
          const after = await show(s)
          if (isRunning(after) && after.MainPID === p.MainPID && after.NRestarts === p.NRestarts)
            return `started: ${describe(after)}`
          throw new OperationError(
            `${s.unit}${where(s)} started, then did not stay up: ${describe(after)}${await journalTail(s)}`,
            'start_failed'
          )
        }
        // systemctl start has returned, so the job is done: inactive or failed now means it died already.
        if (isStopped(p))
          throw new OperationError(
            `${s.unit}${where(s)} did not start: ${describe(p)}${await journalTail(s)}`,
            'start_failed'
          )
        if (Date.now() > deadline)
          throw new OperationError(
            `${s.unit}${where(s)} was not active within ${secs(startTimeoutMs)}: ${describe(p)}${await journalTail(s)}`,
            'start_failed'
          )
        await sleep(pollMs)
      }
    },

    async stop(color, timeoutMs) {
      const s = spec(color)
      const before = await loaded(color, s)
      if (isStopped(before)) return `already stopped: ${describe(before)}`
      const started = Date.now()
      // --no-block: the unit's own TimeoutStopSec may be longer than ours; we keep the clock.
      await checked(s, ['systemctl', 'stop', '--no-block', '--', s.unit])
      const waitStopped = async (until: number): Promise<Props | undefined> => {
        for (;;) {
          const p = await show(s)
          if (isStopped(p)) return p
          if (Date.now() > until) return undefined
          await sleep(pollMs)
        }
      }
      const stopped = await waitStopped(started + timeoutMs)
      if (stopped) {
        const result =
          stopped.Result && stopped.Result !== 'success' ? ` (systemd result: ${stopped.Result})` : ''
        return `stopped in ${secs(Date.now() - started)}${result}`
      }
      await checked(s, ['systemctl', 'kill', '--signal=SIGKILL', '--', s.unit])
      const killed = await waitStopped(Date.now() + 10000)
      if (!killed)
        throw new OperationError(
          `${s.unit}${where(s)} did not stop in ${secs(timeoutMs)}, nor 10 s after SIGKILL: ${describe(await show(s))}`,
          'stop_failed'
        )
      return `did not stop in ${secs(timeoutMs)}: killed (SIGKILL)`
    },

    /**
     * What snapshot records in images.txt for this colour: the unit, its checkout and the commit it is on —
     * the pin Level 2 checks out again. Nothing when gitDir is not set.
     */
    async images(color) {
      const s = spec(color)
      if (!s.gitDir) return []
      return [{ service: s.unit, image: gitDir(color, s), pin: await head(color, s, gitDir(color, s)) }]
    },

    async gitCommit(color) {
      const s = spec(color)
      return head(color, s, gitDir(color, s))
    },

    async verifyCheckout(color, commit) {
      const s = spec(color)
      return verify(color, s, gitDir(color, s), commit)
    },

    async checkout(color, commit) {
      const s = spec(color)
      const dir = gitDir(color, s)
      const p = await loaded(color, s)
      if (!isStopped(p))
        throw new UserError(
          `checkout ${color}: ${s.unit} is ${describe(p)} — stop it first (systemctl stop ${s.unit}); ` +
            'changing the code under a running service mixes two versions',
          'unit_running'
        )
      const { from, to } = await verify(color, s, dir, commit)
      if (to === from) return { from, to, detail: `${dir} already at ${to.slice(0, 12)}` }
      await checked(s, ['git', '-C', dir, 'checkout', '--quiet', '--detach', to], 120000)
      const now = await head(color, s, dir)
      if (now !== to)
        throw new OperationError(
          `git checkout ${to} in ${dir}${where(s)} left HEAD at ${now}`,
          'checkout_failed'
        )
      return { from, to, detail: `${dir}: ${from.slice(0, 12)} → ${to.slice(0, 12)}` }
    },

    async journal(color, lines) {
      return journalOf(spec(color), lines)
    }
  }
}
