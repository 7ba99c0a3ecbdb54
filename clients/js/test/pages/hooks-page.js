// The React hooks in a page, for the browser tests: presence, room state, user events, and a
// useRoom whose handlers gain an event after mount. Renders what they give as text.
import { StrictMode, createElement as h, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { Ferrocast } from '../../src/index.ts';
import { FerrocastProvider, usePresence, useRoom, useRoomState, useUserEvents } from '../../src/react.ts';

const q = new URLSearchParams(location.search);
const fc = new Ferrocast(q.get('edge'), { token: q.get('token') });
const ROOM = 'hooks:1';

function Presence() {
  const members = usePresence(ROOM);
  return h('p', { id: 'members' }, members.map((m) => `${m.user}${m.info?.name ? `(${m.info.name})` : ''}`).sort().join(','));
}

function State({ room }) {
  const { state, error } = useRoomState(room);
  useRoom(room);
  return h('p', { id: `state-${room.replace(':', '-')}` }, error ? `${state}:${error.code}` : state);
}

function Notes() {
  const [notes, setNotes] = useState([]);
  useUserEvents({ note: (data) => setNotes((n) => [...n, data.text]) });
  return h('p', { id: 'notes' }, notes.join(','));
}

function Ticks() {
  const [listening, setListening] = useState(false);
  const [ticks, setTicks] = useState([]);
  window.listen = () => setListening(true);
  // No handler at first; `tick` is added on a later render: it must be subscribed then.
  useRoom(ROOM, listening ? { tick: (n) => setTicks((t) => [...t, n]) } : {});
  return h('p', { id: 'ticks' }, `${listening}:${ticks.join(',')}`);
}

createRoot(document.getElementById('root')).render(
  h(StrictMode, null, h(FerrocastProvider, { client: fc }, h(State, { room: ROOM }), h(State, { room: 'secret' }), h(Presence), h(Notes), h(Ticks))),
);
