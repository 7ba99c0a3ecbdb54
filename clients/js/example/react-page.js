// The chat on React, under StrictMode: one provider, one room hook, one socket.
import { StrictMode, createElement as h, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { Ferrocast } from '../src/index.ts';
import { FerrocastProvider, useConnectionState, useRoom } from '../src/react.ts';

const params = new URLSearchParams(location.search);
const user = params.get('user') ?? 'alice';
const roomName = params.get('room') ?? 'chat:1';
const fc = new Ferrocast(params.get('edge') ?? `ws://${location.hostname}:8080/ws`, {
  getToken: async () => (await fetch(`/token?user=${encodeURIComponent(user)}`)).text(),
});

function Chat() {
  const state = useConnectionState();
  const [lines, setLines] = useState([]);
  useRoom(roomName, {
    'chat.message': (data) => setLines((l) => [...l, `${data.from}: ${data.text}`]),
    $joined: () => (document.body.dataset.joined = 'yes'),
  });
  return h('div', null, h('p', { id: 'state' }, state), h('ul', { id: 'lines' }, lines.map((t, i) => h('li', { key: i }, t))));
}

createRoot(document.getElementById('root')).render(
  h(StrictMode, null, h(FerrocastProvider, { client: fc }, h(Chat))),
);
