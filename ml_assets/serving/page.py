"""The service's one page: a form for a listing, its predicted price and what drove it. No external assets."""

from __future__ import annotations

import html
from typing import Literal, get_args, get_origin

from ml_assets.schema import Listing

# A typical Ames sale, so the page predicts something sensible on the first click.
EXAMPLE = {
    "brokered_by": 21000.0,
    "status": "sold",
    "bed": 3.0,
    "bath": 2.0,
    "acre_lot": 0.23,
    "street": "1021 Old Town Street",
    "city": "Ames",
    "state": "Iowa",
    "zip_code": 50014.0,
    "house_size": 1500.0,
    "prev_sold_date": "2008-06-01",
}


def _input(name: str) -> str:
    info = Listing.model_fields[name]
    value = EXAMPLE.get(name, "")
    label = f'<label for="{name}">{name.replace("_", " ")}</label>'
    choices = [a for a in get_args(info.annotation) if get_origin(a) is Literal]
    if get_origin(info.annotation) is Literal or choices:
        options = get_args(info.annotation) if get_origin(info.annotation) is Literal else get_args(choices[0])
        items = "".join(f"<option{' selected' * (o == value)}>{html.escape(o)}</option>" for o in options)
        return f'{label}<select id="{name}" name="{name}">{items}</select>'
    numeric = float in get_args(info.annotation) or info.annotation is float
    kind = 'type="number" step="any"' if numeric else 'type="text"'
    hint, shown = html.escape(info.description or "", quote=True), html.escape(str(value), quote=True)
    return f'{label}<input id="{name}" name="{name}" {kind} value="{shown}" title="{hint}">'


STYLE = """
body{font:15px/1.4 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}main{display:grid;grid-template-columns:20rem 1fr;gap:2rem}
form{display:grid;grid-template-columns:8rem 1fr;gap:.4rem .6rem;align-items:center}
label{text-align:right;color:#555}input,select{padding:.3rem;font:inherit}
button{grid-column:2;padding:.5rem;font:inherit;font-weight:600;cursor:pointer}
#price{font-size:2.2rem;font-weight:700}#meta,#error{color:#666}#error{color:#b00;white-space:pre-line}
table{border-collapse:collapse;width:100%;margin-top:1rem}td{padding:.2rem .4rem;border-bottom:1px solid #eee}
td.num{text-align:right;font-variant-numeric:tabular-nums;width:5rem}.bar{height:.8rem;border-radius:2px}
.up{background:#2a8a4a}.down{background:#c0392b}
"""

SCRIPT = """
const form = document.getElementById("listing");
const money = new Intl.NumberFormat("en-US", {style: "currency", currency: "USD", maximumFractionDigits: 0});
async function post(path, body) {
  const response = await fetch(path, {method: "POST", headers: {"content-type": "application/json"},
                                      body: JSON.stringify(body)});
  const data = await response.json().catch(() => ({detail: response.statusText}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail)
      ? data.detail.map(e => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("\\n") : data.detail;
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}
function listing() {
  const body = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    const value = el.value.trim();  // an empty field is sent as null ("unknown"): required keys stay present
    body[el.name] = value === "" ? null : el.type === "number" ? Number(value) : value;
  }
  return body;
}
function showContributions(percent) {
  const rows = Object.entries(percent).slice(0, 8);
  const widest = Math.max(1e-9, ...rows.map(([, v]) => Math.abs(v)));
  const body = document.querySelector("#contributions tbody");
  body.replaceChildren(...rows.map(([name, value]) => {
    const tr = document.createElement("tr");
    const bar = `<div class="bar ${value >= 0 ? "up" : "down"}" style="width:${100 * Math.abs(value) / widest}%">`;
    tr.innerHTML = `<td></td><td class="num">${value > 0 ? "+" : ""}${value.toFixed(1)}%</td><td>${bar}</div></td>`;
    tr.firstChild.textContent = name.replace(/_/g, " ");
    return tr;
  }));
}
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const price = document.getElementById("price"), error = document.getElementById("error");
  error.textContent = ""; price.textContent = "…"; delete price.dataset.price;
  try {
    const body = listing();
    const [prediction, explanation] = await Promise.all([post("predict", body), post("explain", body)]);
    price.textContent = money.format(prediction.price);
    price.dataset.price = String(prediction.price);
    document.getElementById("meta").textContent = `model version ${prediction.model_version}`;
    showContributions(explanation.contributions_percent);
  } catch (err) {
    price.textContent = "-"; error.textContent = err.message;
  }
});
"""


def render_page() -> str:
    fields = "\n".join(_input(name) for name in Listing.model_fields)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>House price</title><link rel="icon" href="data:,"><style>{STYLE}</style></head>
<body><h1>House price estimate</h1><main>
<form id="listing">{fields}<button id="predict" type="submit">Predict</button></form>
<section><div id="price" aria-live="polite">-</div><div id="meta"></div><div id="error"></div>
<table id="contributions"><caption>What moved the price (vs. a typical house)</caption><tbody></tbody></table>
</section></main><script>{SCRIPT}</script></body></html>"""
