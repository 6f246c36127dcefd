/**
 * The tests run against real systems. Where one is missing, a developer's run skips its tests and says why; under
 * CI (CI=true) a missing real system fails the run, naming the tool, so a green CI never hides tests that did
 * not run.
 */
export function describeWith(missing: string, name: string): jest.Describe {
  if (missing === '') return describe
  if (process.env.CI === 'true')
    throw new Error(`${name}: a real system these tests need is missing under CI — ${missing}`)
  console.warn(`${name} skipped: ${missing}`)
  return describe.skip
}

/** For a check made inside a test: under CI, a missing real system fails the test; elsewhere it is skipped (true). */
export function skipWithout(missing: string, name: string): boolean {
  if (missing === '') return false
  if (process.env.CI === 'true')
    throw new Error(`${name}: a real system this test needs is missing under CI — ${missing}`)
  console.warn(`${name} skipped: ${missing}`)
  return true
}
