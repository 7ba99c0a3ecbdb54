// A chat page on the Ferrocast client: it joins a room, shows what the chat worker
// (emitter/examples/chat_worker.rs) publishes there, and sends `chat.send` upstream to it.
// Reconnects, resumes and refreshes by itself; the page only renders.
import { Ferrocast } from './ferrocast.min.js';

const params = new URLSearchParams(location.search);
const user = params.get('user') ?? 'alice';
const roomName = params.get('room') ?? 'chat:1';
const edge = params.get('edge') ?? `ws://${location.hostname}:8080/ws`;
const $ = (id) => document.getElementById(id);

// The page's own server hands out tokens (serve.mjs stands in for your login).
const fc = new Ferrocast(edge, {
  getToken: async () => (await fetch(`/token?user=${encodeURIComponent(user)}`)).text(),
});
const line = (text, className) => {
  const li = document.createElement('li');
  li.textContent = text;
  if (className) li.className = className;
  $('lines').append(li);
};

$('room').textContent = roomName;
fc.on('state', (state) => ($('state').textContent = state));
fc.on('client', (event, data) => line(data.text ?? data.reason ?? event, 'note'));
const room = fc.room(roomName);
room.on('chat.message', (data) => line(`${data.from}: ${data.text}`));
room.on('$joined', ({ recovered }) => {
  if (!recovered) line('(some messages may be missing)', 'note');
});
room.on('$gap', () => line('(some messages were lost)', 'note'));
await room.join();
document.body.dataset.joined = 'yes';

$('form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('text').value.trim();
  if (!text) return;
  $('text').value = '';
  try {
    await fc.send('chat.send', { room: roomName, text });
  } catch (error) {
    line(`not sent: ${error.code}`, 'note');
  }
});
