/**
 * The caller workflows `backout init --workflows DIR` writes into a user's repository. They call this
 * repository's reusable workflows and actions by OWNER/REPO/...@REF — never `./.github/workflows/...`, which
 * exists only inside backout's own repository. Every template is here, in one place, so that a change to
 * the reusable workflows' inputs is one edit.
 */

export interface WorkflowOptions {
  /** Where backout lives on GitHub, e.g. backout/backout (a fork: your-org/backout). */
  repo: string
  /** The tag, branch or commit SHA to pin, e.g. v1. */
  ref: string
  /** The deployment environment rolled back (its approval environments are rollback-level-1/2/3). */
  environment: string
  /** The self-hosted runner labels beside the service. */
  runnerLabels: readonly string[]
  /** backout.yml's path in the repository. */
  config: string
  /** The name of the deploy workflow whose failure triggers an assessment. */
  deployWorkflow: string
}

export const DEFAULT_WORKFLOW_OPTIONS: WorkflowOptions = {
  repo: 'backout/backout',
  ref: 'v1',
  environment: 'production',
  runnerLabels: ['self-hosted'],
  config: 'backout.yml',
  deployWorkflow: 'deploy'
}

/** What the reusable rollback workflow needs from its caller (GITHUB_TOKEN scopes). */
const ROLLBACK_PERMISSIONS = `permissions:
  contents: read
  issues: write
  deployments: write
`

const q = (s: string): string => `'${s.replace(/'/g, "''")}'`

export function callerWorkflows(o: WorkflowOptions): Record<string, string> {
  const wf = (name: string): string => `${o.repo}/.github/workflows/${name}@${o.ref}`
  const action = (name: string): string => `${o.repo}/actions/${name}@${o.ref}`
  const labels = q(JSON.stringify(o.runnerLabels))
  const runsOn = `[${o.runnerLabels.join(', ')}]`
  const secrets = `    secrets:
      BACKOUT_ENV: \${{ secrets.BACKOUT_ENV }}
`
  return {
    'backout-rollback.yml': `# The on-call button: Actions → backout-rollback → Run workflow. Written by \`backout init --workflows\`.
# Runs backout's reusable rollback (assess → snapshot → level N → validate → incident) on your runner;
# each level waits for the approvals of the rollback-level-N environment.
name: backout-rollback
on:
  workflow_dispatch:
    inputs:
      level:
        description: Rollback level (1 switch, 2 full, 3 point-in-time)
        type: choice
        options: ['1', '2', '3']
        default: '1'
      target:
        description: Backup id for levels 2 and 3 (empty = the newest snapshot; \`backout list\` shows them)
        type: string
        default: ''
      reason:
        description: Why
        type: string
        required: true
      dry_run:
        description: Plan only, change nothing
        type: boolean
        default: false
      confirm:
        description: Type ROLLBACK to confirm
        type: string
        required: true
${ROLLBACK_PERMISSIONS}jobs:
  confirm:
    runs-on: ubuntu-latest
    permissions: {}
    steps:
      - name: Require ROLLBACK
        env:
          CONFIRM: \${{ inputs.confirm }}
        run: |
          if [ "$CONFIRM" != "ROLLBACK" ]; then
            echo "::error::confirm must be the word ROLLBACK — run the workflow again"
            exit 2
          fi
  rollback:
    needs: confirm
    uses: ${wf('rollback.yml')}
    with:
      environment: ${o.environment}
      level: \${{ inputs.level }}
      target: \${{ inputs.target }}
      reason: \${{ inputs.reason }}
      dry-run: \${{ inputs.dry_run }}
      config: ${o.config}
      runner-labels: ${labels}
${secrets}`,

    'backout-on-failed-deploy.yml': `# When the ${o.deployWorkflow} workflow fails: assess first, roll back only when the runbook's decision tree
# says so, at the level it recommends. Written by \`backout init --workflows\`.
name: backout-on-failed-deploy
on:
  workflow_run:
    workflows: [${q(o.deployWorkflow)}]
    types: [completed]
${ROLLBACK_PERMISSIONS}jobs:
  assess:
    if: \${{ github.event.workflow_run.conclusion == 'failure' }}
    runs-on: ${runsOn}
    permissions:
      contents: read
    outputs:
      should_rollback: \${{ steps.assess.outputs.should_rollback }}
      level: \${{ steps.assess.outputs.level }}
      severity: \${{ steps.assess.outputs.severity }}
    steps:
      - uses: actions/checkout@v4
      - id: assess
        uses: ${action('assess')}
        with:
          config: ${o.config}
          env: \${{ secrets.BACKOUT_ENV }}
  rollback:
    needs: assess
    if: \${{ needs.assess.outputs.should_rollback == 'true' }}
    uses: ${wf('rollback.yml')}
    with:
      environment: ${o.environment}
      level: \${{ needs.assess.outputs.level }}
      reason: 'deployment run \${{ github.event.workflow_run.id }} failed; assess: \${{ needs.assess.outputs.severity }}'
      config: ${o.config}
      runner-labels: ${labels}
${secrets}`,

    'backout-chatops.yml': `# ChatOps: \`/rollback [level=N] [target=ID] [--dry-run]\`, \`/rollback list|status|help\` in an issue or pull
# request comment, by users with write access. Written by \`backout init --workflows\`.
name: backout-chatops
on:
  issue_comment:
    types: [created]
permissions:
  contents: read
  issues: write
  pull-requests: read
  deployments: write
jobs:
  command:
    if: \${{ startsWith(github.event.comment.body, '/rollback') }}
    runs-on: ${runsOn}
    outputs:
      should_run: \${{ steps.chatops.outputs.should_run }}
      level: \${{ steps.chatops.outputs.level }}
      target: \${{ steps.chatops.outputs.target }}
      dry_run: \${{ steps.chatops.outputs.dry_run }}
    steps:
      - uses: actions/checkout@v4
      - id: chatops
        uses: ${action('chatops')}
        with:
          config: ${o.config}
          default-environment: ${o.environment}
          env: \${{ secrets.BACKOUT_ENV }}
  rollback:
    needs: command
    if: \${{ needs.command.outputs.should_run == 'true' }}
    uses: ${wf('rollback.yml')}
    with:
      environment: ${o.environment}
      level: \${{ needs.command.outputs.level }}
      target: \${{ needs.command.outputs.target }}
      reason: 'ChatOps /rollback by \${{ github.event.comment.user.login }} on #\${{ github.event.issue.number }}'
      dry-run: \${{ needs.command.outputs.dry_run == 'true' }}
      config: ${o.config}
      runner-labels: ${labels}
${secrets}  result:
    needs: [command, rollback]
    if: \${{ always() && needs.command.outputs.should_run == 'true' }}
    runs-on: ${runsOn}
    steps:
      - uses: ${action('chatops')}
        with:
          config: ${o.config}
          env: \${{ secrets.BACKOUT_ENV }}
          report: \${{ needs.rollback.outputs.result }}
`,

    'backout-record-release.yml': `# Records the release about to be replaced (a verified snapshot), so every rollback has an exact target.
# Call it as the first job of your ${o.deployWorkflow} workflow:
#   jobs:
#     record:
#       uses: ./.github/workflows/backout-record-release.yml
#       secrets: inherit
#     deploy:
#       needs: record
# Written by \`backout init --workflows\`.
name: backout-record-release
on:
  workflow_call:
    secrets:
      BACKOUT_ENV:
        required: false
  workflow_dispatch:
permissions:
  contents: read
jobs:
  record:
    uses: ${wf('record-release.yml')}
    with:
      config: ${o.config}
      runner-labels: ${labels}
${secrets}`
  }
}
