// The Ferrocast console: polls the API under /console/api/ (the browser sends the key it asked
// for with each request) and renders with textContent only, never HTML from data.
'use strict';

const EDGES_EVERY_MS = 2000;
const TAIL_EVERY_MS = 1000;
const $ = (id) => document.getElementById(id);

async function api(path, init) {
  const response = await fetch('api/' + path, { cache: 'no-store', ...init });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = body.error ? body.error.code + ': ' + body.error.message : 'HTTP ' + response.status;
    throw new Error(message);
  }
  return body;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = String(text);
  if (className) td.className = className;
}

function uptime(seconds) {
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min` : `${seconds} s`;
}

async function refreshEdges() {
  try {
    const { nodes } = await api('nodes');
    const body = $('edges').tBodies[0];
    body.replaceChildren();
    const rooms = new Map();
    for (const n of nodes) {
      const row = body.insertRow();
      row.dataset.node = n.node;
      cell(row, n.node);
      cell(row, n.version);
      cell(row, uptime(n.uptime_s));
      cell(row, n.connections);
      cell(row, n.rooms);
      cell(row, n.deliveries_per_s);
      cell(row, n.outbound_drops);
      cell(row, n.redis, n.redis === 'down' ? 'down' : '');
      cell(row, n.ready ? 'yes' : 'no', n.ready ? '' : 'no');
      for (const r of n.top_rooms || []) rooms.set(r.room, (rooms.get(r.room) || 0) + r.members);
    }
    renderRooms(rooms);
    $('status').textContent = `${nodes.length} edge(s), updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $('status').textContent = 'Cannot list the edges: ' + error.message;
  }
}

function renderRooms(rooms) {
  const list = $('rooms');
  list.replaceChildren();
  const largest = [...rooms].sort((a, b) => b[1] - a[1]).slice(0, 10);
  if (largest.length === 0) {
    list.append(Object.assign(document.createElement('li'), { textContent: 'No room has members.' }));
  }
  for (const [room, members] of largest) {
    const item = document.createElement('li');
    const button = Object.assign(document.createElement('button'), {
      type: 'button',
      textContent: `${room} (${members})`,
    });
    button.addEventListener('click', () => { $('room').value = room; watch(room); });
    item.append(button);
    list.append(item);
  }
}

let watching = null;

async function showPresence(room) {
  try {
    const { clients } = await api('presence?room=' + encodeURIComponent(room));
    $('presence').textContent = clients.length === 0
      ? 'Nobody.'
      : clients.map((c) => `${c.user} (${c.client})`).join(', ');
  } catch (error) {
    $('presence').textContent = 'Not available: ' + error.message;
  }
}

async function tail(room, seen) {
  if (watching !== room) return;
  try {
    const { messages } = await api(`history?room=${encodeURIComponent(room)}&limit=50`);
    const list = $('tail');
    for (const m of messages) {
      if (seen.has(m.offset)) continue;
      seen.add(m.offset);
      const item = document.createElement('li');
      item.textContent = `${new Date(m.ts).toLocaleTimeString()} ${m.event} ${JSON.stringify(m.data)}`;
      list.append(item);
    }
    list.scrollTop = list.scrollHeight;
  } catch (error) {
    $('published').textContent = 'Cannot read the room: ' + error.message;
  }
  setTimeout(() => tail(room, seen), TAIL_EVERY_MS);
}

function watch(room) {
  watching = room;
  $('tail').replaceChildren();
  showPresence(room);
  tail(room, new Set());
}

$('room-form').addEventListener('submit', (event) => {
  event.preventDefault();
  watch($('room').value.trim());
});

$('publish-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const room = $('room').value.trim();
  const out = $('published');
  let data;
  try {
    data = JSON.parse($('data').value);
  } catch {
    out.textContent = 'The data is not JSON.';
    return;
  }
  try {
    const answer = await api('publish', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ room, event: $('event').value.trim(), data }),
    });
    out.textContent = 'Published at ' + answer.offset;
    if (watching !== room) watch(room);
  } catch (error) {
    out.textContent = 'Not published: ' + error.message;
  }
});

refreshEdges();
setInterval(refreshEdges, EDGES_EVERY_MS);
