export { freePort } from '../../src/drivers/net'
