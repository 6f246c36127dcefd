import type { Config } from '../../core/config'
import { historyMetrics, historyPrometheus } from '../../core/history-metrics'

/** `history --format prometheus|json`: the rollback metrics (a node_exporter textfile, or JSON). */
export function printMetrics(
  config: Config,
  lines: readonly string[],
  o: { format: string; deployments?: number },
  print: (human: string, data: unknown) => void
): void {
  const m = historyMetrics(lines, { service: config.service, environment: config.environment }, o.deployments)
  if (o.format === 'prometheus') process.stdout.write(historyPrometheus(m))
  else print(JSON.stringify(m, null, 2), m)
}
