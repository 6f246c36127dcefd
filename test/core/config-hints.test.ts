import { parseConfig } from '../../src/core/config'
import { minimalConfig } from '../support/minimal-config'

test('an unknown key gets a did-you-mean and the keys known at its place', () => {
  const bad = {
    ...minimalConfig,
    backup: {},
    nginx: { ...minimalConfig.nginx, upstream_file: 'x' },
    targets: { ...minimalConfig.targets, blue: { ...minimalConfig.targets.blue, verison: 'v1' } },
    database: { kind: 'postgres', url: 'postgresql://h/db', criticalTabels: [] }
  }
  expect(() => parseConfig(bad, 'backout.yml')).toThrow(
    /targets\.blue: Unrecognized key: "verison" — "verison" → did you mean "version"\? \(known here: version, upstream/
  )
  expect(() => parseConfig(bad, 'backout.yml')).toThrow(
    /nginx: .*"upstream_file" → did you mean "upstreamFile"\?/
  )
  expect(() => parseConfig(bad, 'backout.yml')).toThrow(
    /\(top level\): .*"backup" → did you mean "backups"\?/
  )
  expect(() => parseConfig(bad, 'backout.yml')).toThrow(
    /database: .*"criticalTabels" → did you mean "criticalTables"\?/
  )
  // nothing close: no guess, only the known keys
  expect(() => parseConfig({ ...minimalConfig, zzzzzz: 1 }, 'backout.yml')).toThrow(
    /\(top level\): Unrecognized key: "zzzzzz" \(known here: service,/
  )
})
