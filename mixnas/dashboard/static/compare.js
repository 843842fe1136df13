// Two studies side by side (a study and its promoted child, or one space on two tasks): both
// studies' designs and fronts over the objectives they share, and the designs both tried, matched
// by architecture hash.
'use strict';

(() => {
  const { el, fmt, paths, getJSON, escapeHtml } = MX;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const a = params.get('a'), b = params.get('b');
  const COLORS = ['#4f46e5', '#d97706'];
  let data = null;

  MX.header([[`${a} vs ${b}`, null]]);
  document.title = `${a} vs ${b} · mixnas dashboard`;

  // The front a side shows: of the two plotted objectives (drawn as a staircase), or of all the
  // objectives the studies share (markers only: in two dimensions it is no staircase).
  function frontOf(side, xi, yi, ofAll) {
    if (ofAll || xi === yi) return side.front;
    const [i, j] = xi < yi ? [xi, yi] : [yi, xi];
    return side.pair_fronts[`${data.objectives[i].name},${data.objectives[j].name}`];
  }

  function keepViewInUrl(xi, yi, front) {
    const query = new URLSearchParams({ a, b, x: data.objectives[xi].name, y: data.objectives[yi].name, front });
    history.replaceState(null, '', `${location.pathname}?${query}`);
  }

  function render() {
    const xi = Number($('x-axis').value), yi = Number($('y-axis').value);
    const ofAll = $('front-of').value === 'all';
    keepViewInUrl(xi, yi, $('front-of').value);
    const objectives = data.objectives;
    const traces = [];
    data.studies.forEach((side, s) => {
      const onFront = new Set(frontOf(side, xi, yi, ofAll));
      const index = side.trials.map((n, i) => i);
      const front = index.filter((i) => onFront.has(side.trials[i]))
        .sort((p, q) => side.values[p][xi] - side.values[q][xi] || side.values[p][yi] - side.values[q][yi]);
      const rest = index.filter((i) => !onFront.has(side.trials[i]));
      const points = (ids, extra) => Object.assign({
        type: 'scatter', x: ids.map((i) => side.values[i][xi]), y: ids.map((i) => side.values[i][yi]),
        customdata: ids.map((i) => [side.name, side.trials[i],
          objectives.map((o, k) => `${escapeHtml(o.name)}: ${fmt(side.values[i][k])}`).join('<br>')]),
        hovertemplate: '<b>%{customdata[0]} #%{customdata[1]}</b><br>%{customdata[2]}<extra></extra>',
      }, extra);
      traces.push(points(rest, { mode: 'markers', name: `${escapeHtml(side.name)} (${rest.length} dominated)`,
        marker: { size: 5, color: COLORS[s], opacity: 0.25 } }));
      traces.push(points(front, { mode: ofAll ? 'markers' : 'lines+markers', name: `${escapeHtml(side.name)} front (${front.length})`,
        line: { shape: objectives[xi].direction === 'minimize' ? 'hv' : 'vh', color: COLORS[s], width: 1.6 },
        marker: { size: 10, color: COLORS[s], line: { color: '#111827', width: 1 } } }));
    });
    Plotly.react('overlay', traces, {
      font: MX.PLOT_FONT, margin: { l: 64, r: 16, t: 36, b: 52 }, hovermode: 'closest',
      plot_bgcolor: '#fff', paper_bgcolor: '#fff',
      xaxis: MX.axisStyle(MX.objectiveLabel(objectives[xi])), yaxis: MX.axisStyle(MX.objectiveLabel(objectives[yi])),
      legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom' },
    }, MX.PLOT_CONFIG);
    const which = ofAll ? 'all shared objectives' : `${objectives[xi].name} and ${objectives[yi].name}`;
    $('overlay-note').textContent = data.studies.map((s) => `${s.name}: ${s.trials.length} designs, `
      + `${frontOf(s, xi, yi, ofAll).length} on the front of ${which}`).join(' · ')
      + '. One point per design. Click a point to open its trial.';
  }

  function renderShared() {
    const objectives = data.objectives;
    const rows = data.shared_designs;
    $('shared-count').textContent = `${rows.length} designs`;
    if (!rows.length) {
      $('shared').replaceChildren(el('div', { class: 'empty' }, 'The two studies share no design (architecture hash).'));
      return;
    }
    const [sa, sb] = data.studies;
    const head = el('tr', {}, el('th', {}, 'design'), el('th', { class: 'num' }, `${sa.name} trial`),
      el('th', { class: 'num' }, `${sb.name} trial`),
      objectives.map((o) => [el('th', { class: 'num' }, `${o.name} (${sa.name})`), el('th', { class: 'num' }, `${o.name} (${sb.name})`)]));
    const body = rows.map((m) => el('tr', { 'data-design': m.design },
      el('td', { class: 'mono' }, m.design.slice(0, 12)),
      el('td', { class: 'num' }, el('a', { href: paths.trial(sa.name, m.a) }, `#${m.a}`)),
      el('td', { class: 'num' }, el('a', { href: paths.trial(sb.name, m.b) }, `#${m.b}`)),
      objectives.map((o, k) => [el('td', { class: 'num' }, fmt(m.a_values[k])), el('td', { class: 'num' }, fmt(m.b_values[k]))])));
    $('shared').replaceChildren(el('table', { id: 'shared-table' }, el('thead', {}, head), el('tbody', {}, body)));
  }

  async function build() {
    data = await getJSON(`/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
    if (data.objectives.length < 2) throw new Error('The two studies share fewer than two objectives.');
    $('title').textContent = `${a} vs ${b}`;
    $('objectives').textContent = data.objectives.map(MX.objectiveLabel).join(' · ');
    const options = (select, chosen) => select.replaceChildren(...data.objectives.map((o, i) => el('option', { value: i, selected: i === chosen }, o.name)));
    const wanted = (key, fallback) => {
      const i = data.objectives.findIndex((o) => o.name === params.get(key));
      return i < 0 ? fallback : i;
    };
    options($('x-axis'), wanted('x', 0));
    options($('y-axis'), wanted('y', 1));
    $('front-of').value = params.get('front') === 'all' ? 'all' : 'xy';
    for (const id of ['x-axis', 'y-axis', 'front-of']) $(id).addEventListener('change', render);
    render();
    renderShared();
    $('overlay').on('plotly_click', (event) => {
      const point = event.points.find((p) => p.customdata);
      if (point) location.href = paths.trial(point.customdata[0], point.customdata[1]);
    });
  }

  MX.loadOnce(build);
})();
