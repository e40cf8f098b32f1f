// The connection badge in the top bar: online, connecting, or offline with the next retry.

export function showConnection(element, socket) {
  let detail = {};
  const render = () => {
    const state = socket.state;
    element.className = `conn conn-${state}`;
    if (state === "offline" && detail.retryAt) {
      const s = Math.max(0, Math.ceil((detail.retryAt - Date.now()) / 1000));
      element.textContent = `offline — reconnecting in ${s} s`;
    } else {
      element.textContent = state === "online" ? "live" : state;
    }
    document.body.dataset.connection = state;
  };
  socket.onState((state, d) => { detail = d; render(); });
  setInterval(render, 1000);
}
