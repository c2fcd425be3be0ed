// The report pages' charts (same origin, no inline code): each .chart[data-figure] is drawn with uPlot
// (vendored beside this file) from the numbers the page carries in #report-data, the same numbers its
// table shows; money is in minor units and drawn in major ones. A chart that is drawn says so in
// data-drawn, and follows the window's width.
"use strict";
(function () {
  const PALETTE = ["#1f3f73", "#c2410c", "#0a5c36", "#7c3aed", "#9b1c1c", "#0e7490", "#a16207", "#475569"];
  const HEIGHT = 240;

  function width(el) {
    return Math.max(240, Math.floor(el.getBoundingClientRect().width));
  }

  function follow(el, chart) {
    window.addEventListener("resize", function () {
      chart.setSize({ width: width(el), height: HEIGHT });
    });
    el.dataset.drawn = "1";
  }

  function drawFigure(el, data) {
    const figure = el.dataset.figure;
    const by = data.figures[figure];
    const scale = data.money.indexOf(figure) >= 0 ? 100 : 1;
    const xs = data.days.map(function (d) { return Date.parse(d + "T00:00:00Z") / 1000; });
    const series = [{}];
    const columns = [xs];
    data.stores.forEach(function (store, i) {
      series.push({
        label: Object.prototype.hasOwnProperty.call(data.labels, store) ? data.labels[store] : store,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        points: { show: true },
      });
      columns.push(by[store].map(function (n) { return n / scale; }));
    });
    const options = {
      width: width(el),
      height: HEIGHT,
      series: series,
      scales: { x: { time: true } },
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
    };
    follow(el, new uPlot(options, columns, el));
  }

  function drawCampaigns(el, campaigns) {
    const labels = [];
    const issued = [];
    const redeemed = [];
    campaigns.forEach(function (c) {
      c.arms.forEach(function (a) {
        labels.push(c.campaign_id + " / " + a.arm);
        issued.push(a.issued);
        redeemed.push(a.redeemed);
      });
    });
    const xs = labels.map(function (_, i) { return i; });
    const bars = uPlot.paths.bars({ size: [0.35, 60] });
    const options = {
      width: width(el),
      height: HEIGHT,
      scales: { x: { time: false, range: [-0.5, Math.max(labels.length - 0.5, 0.5)] } },
      axes: [{ values: function (u, ticks) { return ticks.map(function (i) { return labels[i] || ""; }); } }, {}],
      series: [
        {},
        { label: el.dataset.issued, stroke: PALETTE[0], fill: PALETTE[0], paths: bars },
        { label: el.dataset.redeemed, stroke: PALETTE[1], fill: PALETTE[1], paths: bars },
      ],
    };
    follow(el, new uPlot(options, [xs, issued, redeemed], el));
  }

  function draw() {
    const node = document.getElementById("report-data");
    if (!node || typeof uPlot === "undefined") return;
    const data = JSON.parse(node.textContent);
    document.querySelectorAll(".chart[data-figure]").forEach(function (el) { drawFigure(el, data); });
    document.querySelectorAll(".chart[data-campaigns]").forEach(function (el) { drawCampaigns(el, data.campaigns); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
