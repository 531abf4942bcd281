// The inspector of a Meridian child process, for profiles taken over a window of load rather than the whole run.
import type { Child } from './children.ts';

export interface InspectorSession {
  send: (method: string, params?: object) => Promise<any>;
  close: () => void;
}

/** The session of a child started with `--inspect=127.0.0.1:0`, whose URL it printed on stderr. */
export function inspectorOf(child: Child): Promise<InspectorSession> {
  const wsUrl = /ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/.exec(child.output())?.[0];
  if (wsUrl === undefined) throw new Error(`no inspector URL in:\n${child.output()}`);
  return cdp(wsUrl);
}

/** A minimal Chrome DevTools Protocol client over the inspector's WebSocket. */
async function cdp(wsUrl: string): Promise<InspectorSession> {
  const ws = new WebSocket(wsUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let id = 0;
  const waiting = new Map<number, (result: any) => void>();
  ws.onmessage = (event) => {
    const message = JSON.parse(String(event.data));
    if (message.id !== undefined) waiting.get(message.id)?.(message.error ? Promise.reject(new Error(message.error.message)) : message.result);
  };
  return {
    send: (method, params = {}) =>
      new Promise((resolve) => {
        waiting.set(++id, resolve);
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

