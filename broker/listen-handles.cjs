'use strict'
// The helper of accept-handles.ts: listens as asked, sends the listening handle to its parent the
// number of times asked (each arrives there as a duplicate of the socket's descriptor), then closes
// its own and leaves. Plain CommonJS, run by node alone: it starts in a few tens of milliseconds.
const net = require('node:net')

const { port, host, backlog, handles, parent } = JSON.parse(process.argv[2])
// Leaves as soon as its channel to the parent closes, because it closed it or the parent is gone. A
// connection it accepted while listening (a meter reconnecting during a restart) would otherwise keep
// it alive, holding the socket, until that meter gave up: the parent, waiting for it to exit, gave up
// first.
process.once('disconnect', () => process.exit(0))
// And as soon as its parent is gone, however: a parent killed before this process had started never
// said so on the channel (no 'disconnect' came, no send was answered), and this process listened on
// the port for good. Checked every PARENT_CHECK_MS.
const PARENT_CHECK_MS = 100
const parentGone = () => process.ppid !== parent
if (parentGone()) process.exit(0)
setInterval(() => {
  if (parentGone()) process.exit(0)
}, PARENT_CHECK_MS).unref()
const done = () => {
  server.close()
  process.disconnect()
}
const server = net.createServer()
server.once('error', (err) => {
  const { message, code, errno, syscall, address } = err
  process.send({ error: { message, code, errno, syscall, address, port } }, done)
})
server.listen({ port, host, backlog }, () => {
  let sent = 0
  for (let i = 0; i < handles; i++) {
    process.send({ handle: i }, server, (err) => {
      if (err) process.send({ error: { message: err.message, code: err.code } })
      if (++sent === handles) done()
    })
  }
})
