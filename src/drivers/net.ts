import net from 'node:net'

/** Ports this process has handed out: the kernel may offer a port again until whoever got it binds it. */
const handedOut = new Set<number>()

function ephemeralPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out before (a sandbox
 * asks for its nginx, app and database ports before any of them is bound).
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await ephemeralPort()
    if (!handedOut.has(port)) {
      handedOut.add(port)
      return port
    }
  }
  throw new Error('no free TCP port on 127.0.0.1 after 50 tries')
}
