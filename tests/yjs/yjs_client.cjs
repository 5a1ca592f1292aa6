// A y-websocket client driven line by line: commands (JSON) on stdin, events (JSON) on stdout.
// Usage: node yjs_client.cjs ws://host:port/yjs <state-name> [token]
// Values cross the pipe as JSON with two markers: {"$u8": [bytes]} is a Uint8Array and
// {"$bigint": "digits"} a BigInt, so the test sees exactly what Yjs holds.
const Y = require('yjs')
const { WebsocketProvider } = require('y-websocket')
const WebSocket = require('ws')
const readline = require('readline')

const [serverUrl, room, token] = process.argv.slice(2)
const doc = new Y.Doc()
const data = doc.getMap('data')
let provider = null

const toWire = (value) => {
  if (value instanceof Uint8Array) return { $u8: Array.from(value) }
  if (typeof value === 'bigint') return { $bigint: value.toString() }
  if (Array.isArray(value)) return value.map(toWire)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toWire(v)]))
  }
  return value
}
const fromWire = (value) => {
  if (Array.isArray(value)) return value.map(fromWire)
  if (value !== null && typeof value === 'object') {
    if (Array.isArray(value.$u8)) return new Uint8Array(value.$u8)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromWire(v)]))
  }
  return value
}
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n')
const dump = () => Object.fromEntries(Array.from(data.entries()).map(([k, v]) => [k, toWire(v)]))

data.observe(() => emit({ event: 'state', data: dump() }))

const commands = {
  connect () {
    provider = new WebsocketProvider(serverUrl, room, doc, {
      WebSocketPolyfill: WebSocket,
      params: token ? { token } : {},
      disableBc: true
    })
    provider.on('sync', (synced) => { if (synced) emit({ event: 'synced', data: dump() }) })
    provider.on('connection-close', (event) => emit({ event: 'closed', code: event ? event.code : null }))
    provider.awareness.on('change', () => {
      const states = Array.from(provider.awareness.getStates().entries())
      emit({ event: 'awareness', states: states.map(([id, state]) => [id, state]) })
    })
  },
  disconnect () { provider.disconnect(); emit({ event: 'disconnected' }) },
  reconnect () { provider.connect() },
  set ({ key, value }) { data.set(key, fromWire(value)); emit({ event: 'set', key }) },
  presence ({ value }) { provider.awareness.setLocalStateField('user', value) },
  dump () { emit({ event: 'state', data: dump() }) },
  exit () { if (provider) provider.destroy(); process.exit(0) }
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line)
  commands[command.op](command)
})
process.stdin.on('end', () => process.exit(0))
