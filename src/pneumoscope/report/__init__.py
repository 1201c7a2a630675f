"""The report: matplotlib plots (``plots``) and the self-contained HTML report (``html``)."""
