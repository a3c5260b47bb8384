// The seed's React hook, built on oxian-sse.js: the latest event's data,
// the last error, whether the stream is open, and the client itself.
// React comes from the page (its UMD build sets window.React): no bundler.
import { SSEClient } from "/oxian-sse.js";

const { useEffect, useState } = window.React;

export function useSSE(url, { event = "message", ...options } = {}) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [connected, setConnected] = useState(false);

  useEffect(() => {
    const client = new SSEClient(url, options);
    client.on("state", (state) => setConnected(state === "open"));
    client.on("error", (err) => setError(err));
    client.on(event, (value) => {
      setData(value);
      setError(null);
    });
    client.connect();
    return () => client.close();
  }, [url, event]);

  return { data, error, connected };
}
