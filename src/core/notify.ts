import { z } from 'zod'
import { stakeholderNotification } from './incident'
import type { RunRecord } from './run-record'

/**
 * `notify:` — the runbook's "Notify Stakeholders" step: the internal notification sent when a rollback
 * starts, succeeds or fails, to Slack (incoming webhook, Block Kit), Microsoft Teams (a Workflows webhook,
 * Adaptive Card) or any JSON webhook. Webhook URLs are secrets: write them as ${VAR}.
 */
const secretUrl = z
  .string()
  .regex(/^(https?:\/\/\S+|\$\{[A-Za-z_][A-Za-z0-9_]*\})$/, 'expected ${VAR} (a secret) or an https:// URL')

export const notifySchema = z
  .object({
    on: z
      .array(z.enum(['start', 'success', 'failure']))
      .default(['start', 'success', 'failure'])
      .describe('which moments of a rollback are announced'),
    channels: z
      .array(
        z.discriminatedUnion('kind', [
          z
            .object({
              kind: z.literal('slack'),
              webhook: secretUrl.describe('incoming webhook URL, e.g. ${SLACK_WEBHOOK}')
            })
            .strict(),
          z
            .object({
              kind: z.literal('teams'),
              webhook: secretUrl.describe('Teams Workflows webhook URL, e.g. ${TEAMS_WEBHOOK}')
            })
            .strict(),
          z
            .object({
              kind: z.literal('webhook'),
              url: secretUrl.describe('receives a JSON document per event')
            })
            .strict()
        ])
      )
      .min(1)
      .describe('where the notifications go, e.g. the #incidents channel'),
    retries: z
      .number()
      .int()
      .min(0)
      .max(10)
      .default(3)
      .describe('retries after a failed delivery (backoff doubles)'),
    backoffMs: z.number().int().min(0).default(1000).describe('the first retry waits this long'),
    timeoutMs: z.number().int().positive().default(5000).describe('per delivery attempt'),
    contact: z.string().optional().describe("the notification's Contact line (default: the on-call engineer)")
  })
  .strict()
  .describe("the runbook's stakeholder notification on start / success / failure of a rollback")

export type NotifyConfig = z.infer<typeof notifySchema>
export type NotifyEvent = 'start' | 'success' | 'failure'
export type Channel = NotifyConfig['channels'][number]

export function eventOf(record: RunRecord): NotifyEvent {
  return record.status === 'running' || record.status === 'planned'
    ? 'start'
    : record.status === 'success'
      ? 'success'
      : 'failure'
}

function title(record: RunRecord, event: NotifyEvent): string {
  const what = `Level ${record.level ?? '?'} rollback of ${record.service} (${record.environment})`
  return event === 'start'
    ? `Production Rollback - ${what} started`
    : event === 'success'
      ? `Production Rollback - ${what} completed`
      : `Production Rollback - ${what} ${record.status}`
}

/** The notification's text: for start, what is happening; at the end, the runbook's internal notification. */
export function notificationText(record: RunRecord, event: NotifyEvent, contact?: string): string {
  if (event !== 'start') return stakeholderNotification(record, { contact })
  return [
    `Subject: ${title(record, event)}`,
    '',
    `Status: rollback in progress (run ${record.id})`,
    `Environment: ${record.environment}`,
    `Rollback Level: ${record.level ?? '?'}`,
    `From: ${record.from ?? 'unknown'}  To: ${record.to ?? 'the previous release'}`,
    `Reason: ${record.reason}`,
    `Deadline: ${record.rtoSeconds ? `${Math.round(record.rtoSeconds / 60)} min` : 'unknown'} (the RTO)`
  ].join('\n')
}

/** The JSON body a channel receives. */
export function notificationPayload(
  channel: Channel,
  record: RunRecord,
  event: NotifyEvent,
  contact?: string
): unknown {
  const text = notificationText(record, event, contact)
  const head = title(record, event)
  const facts: [string, string][] = [
    ['Status', record.status],
    ['Level', String(record.level ?? '?')],
    ['From → to', `${record.from ?? '?'} → ${record.to ?? '?'}`],
    ['Run', record.id],
    ...(record.durationMs !== undefined && event !== 'start'
      ? ([['Duration', `${Math.round(record.durationMs / 1000)} s`]] as [string, string][])
      : [])
  ]
  if (channel.kind === 'slack')
    return {
      text: head,
      blocks: [
        { type: 'header', text: { type: 'plain_text', text: head.slice(0, 150) } },
        { type: 'section', text: { type: 'mrkdwn', text: '```' + text.slice(0, 2900) + '```' } },
        {
          type: 'context',
          elements: facts.map(([k, v]) => ({ type: 'mrkdwn', text: `*${k}:* ${v}` })).slice(0, 10)
        }
      ]
    }
  if (channel.kind === 'teams')
    return {
      type: 'message',
      attachments: [
        {
          contentType: 'application/vnd.microsoft.card.adaptive',
          contentUrl: null,
          content: {
            $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
            type: 'AdaptiveCard',
            version: '1.4',
            body: [
              { type: 'TextBlock', text: head, weight: 'Bolder', size: 'Medium', wrap: true },
              { type: 'FactSet', facts: facts.map(([t, value]) => ({ title: t, value })) },
              { type: 'TextBlock', text, wrap: true, fontType: 'Monospace' }
            ]
          }
        }
      ]
    }
  return {
    schema: 'backout.notification/v1',
    event: `rollback.${event}`,
    service: record.service,
    environment: record.environment,
    level: record.level,
    from: record.from,
    to: record.to,
    status: record.status,
    reason: record.reason,
    runId: record.id,
    startedAt: record.startedAt,
    endedAt: record.endedAt,
    durationSeconds: record.durationMs === undefined ? undefined : record.durationMs / 1000,
    dataLoss: record.dataLoss,
    error: record.error,
    text
  }
}
