// AgentcastAgent: an `@ag-ui/client` agent whose events come from agentcast, so an AG-UI
// frontend (CopilotKit, or anything that drives an `AbstractAgent`) uses agentcast as the
// event source of a user's runs, with agentcast's resume across reconnects built in.
//
// agentcast relays: it does not start or stop runs. The frontend asks its backend to start a
// run (the backend's own endpoint), the backend publishes the run's AG-UI events to agentcast
// (`{"user_id": …, "ag_ui": {…}}`, docs/ag-ui.md), and this agent delivers them:
//
//   import { AgentcastAgent } from "./ag-ui-agent.js";   // bare imports: use a bundler or an import map
//   const agent = new AgentcastAgent({ url: "https://cast.example.com", token: () => fetchJwt() });
//   await fetch("/my-backend/runs", { method: "POST", body: … });   // the backend starts the run
//   const { newMessages } = await agent.connectAgent();             // resolves at RUN_FINISHED / RUN_ERROR
//
// Stopping a run is the backend's business too (its own cancel endpoint): a disconnect never
// cancels anything, the run goes on and a reconnect resumes it.
//
// `connect()` (what `connectAgent()` and `runAgent()` consume) opens
// `/ws?protocol=ag-ui` and emits the user's next run, or the run in progress (the server's
// join prelude replays it from its RUN_STARTED): events before a RUN_STARTED are skipped
// (the prelude is only as good as the history still held), `agentcast.*` CUSTOM
// events are consumed here, `seq` / `seq_from` are stripped, and the observable completes after
// RUN_FINISHED or RUN_ERROR, acknowledging the run (`{"type":"ack"}`) so it is not replayed.
// A socket that drops is reopened after `reconnectMs` with `?last_seq=` = the last seq
// received: the stream continues exactly (no duplicates: seqs at or below it are dropped). A
// `gap` (events no longer held) ends the observable with an error. `lastSeq` in the options
// resumes a stream another agent instance (or a reloaded page) had reached: events are then
// not skipped before a RUN_STARTED, since the caller knows where it is.
import { AbstractAgent } from "@ag-ui/client";
import { Observable } from "rxjs";

export class AgentcastAgent extends AbstractAgent {
  /**
   * @param {object} options
   * @param {string} options.url agentcast's base URL (`http(s)://host:port` or `ws(s)://…`)
   * @param {string | (() => string | Promise<string>)} options.token the user's JWT, or a
   *   function asked before every (re)connect, so a refreshed token is used
   * @param {number | null} [options.lastSeq] resume after this seq (default: the next run)
   * @param {number} [options.reconnectMs] delay before reopening a dropped socket (1000)
   * @param {typeof WebSocket} [options.WebSocket] the WebSocket class (default: the global)
   * Every other option goes to `AbstractAgent` (`agentId`, `threadId`, `initialMessages`, …).
   */
  constructor({ url, token, lastSeq = null, reconnectMs = 1000, WebSocket: Ws, ...config }) {
    super(config);
    this.castUrl = url.replace(/^http/, "ws").replace(/\/$/, "");
    this.castToken = token;
    this.lastSeq = lastSeq;
    this.reconnectMs = reconnectMs;
    this.Ws = Ws ?? globalThis.WebSocket;
  }

  /** agentcast starts no runs: `runAgent()` observes the next run, as `connectAgent()` does. */
  run(input) {
    return this.connect(input);
  }

  connect() {
    return new Observable((sub) => {
      let ws = null;
      let done = false;
      let timer = null;
      let inRun = this.lastSeq !== null;
      const finish = (f) => {
        done = true;
        clearTimeout(timer);
        f();
        if (ws) ws.close(1000);
      };
      const open = async () => {
        const token = typeof this.castToken === "function" ? await this.castToken() : this.castToken;
        if (done) return;
        const q = new URLSearchParams({ protocol: "ag-ui", token });
        if (this.lastSeq !== null) q.set("last_seq", String(this.lastSeq));
        const socket = new this.Ws(`${this.castUrl}/ws?${q}`);
        ws = socket;
        socket.onmessage = (m) => {
          if (done || socket !== ws) return;
          let ev;
          try {
            ev = JSON.parse(m.data);
          } catch {
            return finish(() => sub.error(new Error("agentcast: a frame is not JSON")));
          }
          if (ev.type === "CUSTOM" && typeof ev.name === "string" && ev.name.startsWith("agentcast.")) {
            if (ev.name === "agentcast.gap") {
              const { from, to } = ev.value ?? {};
              finish(() => sub.error(new Error(`agentcast: events ${from}..${to} are no longer held`)));
            }
            return;
          }
          const { seq, seq_from: _from, ...event } = ev;
          if (typeof seq === "number") {
            if (this.lastSeq !== null && seq <= this.lastSeq) return;
            this.lastSeq = seq;
          }
          if (!inRun && event.type !== "RUN_STARTED") return;
          inRun = true;
          sub.next(event);
          if (event.type === "RUN_FINISHED" || event.type === "RUN_ERROR") {
            if (this.lastSeq !== null) socket.send(JSON.stringify({ type: "ack", seq: this.lastSeq }));
            finish(() => sub.complete());
          }
        };
        socket.onclose = () => {
          if (!done && socket === ws) timer = setTimeout(() => open().catch((e) => sub.error(e)), this.reconnectMs);
        };
      };
      open().catch((e) => sub.error(e));
      return () => {
        if (!done) finish(() => {});
      };
    });
  }
}
