// Mistakes the declarations must reject: `tsc -p sdk/js/test/tsconfig.negative.json` has to
// fail with exactly one error on each line marked `// error` and none elsewhere
// (tests/tests/js_package.rs checks both), so the type check cannot pass vacuously.
import { AgentcastClient, type AgentcastEvent } from 'agentcast-client';
import { EventSource as NodeEventSource } from 'eventsource';

new AgentcastClient({ transport: 'carrier-pigeon' }); // error
new AgentcastClient({ initialDelayMs: '250' }); // error
new AgentcastClient({ tokn: 'jwt' }); // error
new AgentcastClient({
  on: {
    agent_started(ev) {
      const delta: string = ev.data.delta; // error
      void delta;
    },
    message_delta(ev) {
      const n: number = ev.data.delta; // error
      void n;
    },
    not_an_event_type() {}, // error
  },
});
export function describe(ev: AgentcastEvent): string {
  if (ev.type === 'tool_executing') return ev.data.message_id; // error
  return ev.type === 'agent_thinking' ? ev.data.delta : ''; // error
}
new AgentcastClient().connect().send('hi'); // error
new AgentcastClient({ onStatus: (status: 'open' | 'bogus') => status }); // error
new AgentcastClient({ WebSocket: NodeEventSource }); // error
