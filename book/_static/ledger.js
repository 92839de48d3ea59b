// dlr-nb ledger: filter the claims by verdict and part (no network, no library)
document.addEventListener("DOMContentLoaded", () => {
  const verdict = document.getElementById("dlr-filter-verdict");
  const part = document.getElementById("dlr-filter-part");
  const shown = document.getElementById("dlr-shown");
  if (!verdict || !part) return;
  const rows = [...document.querySelectorAll("table.dlr-ledger tr.dlr-claim")];
  const apply = () => {
    let n = 0;
    for (const row of rows) {
      const ok = (!verdict.value || row.dataset.verdict === verdict.value) && (!part.value || row.dataset.part === part.value);
      row.style.display = ok ? "" : "none";
      n += ok ? 1 : 0;
    }
    shown.textContent = `${n} of ${rows.length} claims`;
  };
  verdict.addEventListener("change", apply);
  part.addEventListener("change", apply);
  apply();
});
