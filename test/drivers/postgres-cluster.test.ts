import { psql } from '../../src/drivers/postgres-cluster'
import { startTestCluster } from '../support/pg-test-cluster'

test('initdb, start, query and stop a real cluster', async () => {
  const cluster = await startTestCluster()
  try {
    await psql(cluster, 'postgres', 'CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);')
    expect((await psql(cluster, 'postgres', 'SELECT count(*) FROM t')).trim()).toBe('2')
  } finally {
    await cluster.stop()
  }
})
