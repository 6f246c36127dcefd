import { readFileSync } from 'node:fs'
import path from 'node:path'
import { runCli } from '../support/cli'

const readme = readFileSync(path.resolve(__dirname, '../../README.md'), 'utf8')
const cliBlock = /## The CLI\n\n```\n([\s\S]*?)```/.exec(readme)![1]!

/** Commands and subcommands from --help (hidden ones are not listed there). */
async function commands(prefix: string[] = []): Promise<string[][]> {
  const help = (await runCli([...prefix, '--help'])).stdout
  const names = [...(help.split('Commands:')[1] ?? '').matchAll(/^ {2}([a-z][a-z-]*)/gm)]
    .map(m => m[1]!)
    .filter(n => n !== 'help')
  const out: string[][] = []
  for (const name of names) {
    const sub = [...prefix, name]
    const nested = await commands(sub)
    out.push(...(nested.length ? nested : [sub]))
  }
  return out
}

test('every command and every flag in --help is in the README, on the command it belongs to', async () => {
  const all = await commands()
  expect(all.map(c => c.join(' '))).toEqual(expect.arrayContaining(['init', 'doctor', 'rollback', 'history']))
  for (const cmd of all) {
    const help = (await runCli([...cmd, '--help'])).stdout
    const flags = [...new Set([...help.matchAll(/(--[a-z][a-z-]*)/g)].map(m => m[1]!))].filter(
      f => f !== '--help'
    )
    // the README lines of this command: its line and the continuation lines under it
    const lines = cliBlock.split('\n')
    const at = lines.findIndex(
      l => l.trimStart().startsWith(cmd.join(' ') + ' ') || l.trim() === cmd.join(' ')
    )
    expect({ cmd: cmd.join(' '), inReadme: at >= 0 }).toEqual({ cmd: cmd.join(' '), inReadme: true })
    let text = lines[at]!
    for (let i = at + 1; i < lines.length && /^ {7,}\S/.test(lines[i]!) && !/^ {2}[a-z]/.test(lines[i]!); i++)
      text += lines[i]
    for (const flag of flags)
      if (!(cmd[0] === 'init' && flag === '--config'))
        expect({ cmd: cmd.join(' '), flag, documented: text.includes(flag) }).toEqual({
          cmd: cmd.join(' '),
          flag,
          documented: true
        })
  }
})
