// The two npm packages the page needs, bundled into one ES module by build.sh.
export * as Y from 'yjs'
export { WebsocketProvider } from 'y-websocket'
