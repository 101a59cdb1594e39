"""Write small UN Comtrade-shaped CSV files for tests (full 47-column layout or a subset)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from detector.ingest.comtrade import COMTRADE_COLUMNS

# Comtrade's numeric code and name of each country the test files use (the handmade worlds'
# background corridors included).
CODES = {"CHN": ("156", "China"), "USA": ("842", "USA"), "THA": ("764", "Thailand"),
         "MEX": ("484", "Mexico"), "FRA": ("251", "France"), "IND": ("699", "India"),
         "TWN": ("490", "Other Asia, nes"), "CIV": ("384", "Côte d'Ivoire"), "W00": ("0", "World"),
         "KOR": ("410", "Rep. of Korea"), "DEU": ("276", "Germany"), "JPN": ("392", "Japan"),
         "MYS": ("458", "Malaysia"), "VNM": ("704", "Viet Nam"), "BEL": ("56", "Belgium"),
         "NLD": ("528", "Netherlands"), "GBR": ("826", "United Kingdom"), "CAN": ("124", "Canada"),
         "BRA": ("76", "Brazil"), "ITA": ("380", "Italy"), "KAZ": ("398", "Kazakhstan"),
         "RUS": ("643", "Russian Federation"), "HKG": ("344", "Hong Kong"), "SGP": ("702", "Singapore"),
         "ARE": ("784", "United Arab Emirates"), "TUR": ("792", "Türkiye"), "IDN": ("360", "Indonesia"),
         "AUS": ("36", "Australia"), "ESP": ("724", "Spain"), "POL": ("616", "Poland"), "PHL": ("608", "Philippines")}


def row(reporter="USA", partner="CHN", flow="M", cmd="282580", period="202503", value=1000.0,
        weight=50.0, partner2="W00", **overrides) -> dict:
    """One Comtrade row as the API returns it, values CIF for imports and FOB for exports."""
    rcode, rdesc = CODES[reporter]
    pcode, pdesc = CODES[partner]
    p2code, p2desc = CODES[partner2]
    annual = len(period) == 4
    r = {c: "" for c in COMTRADE_COLUMNS}
    r.update({
        "typeCode": "C", "freqCode": "A" if annual else "M",
        "refPeriodId": f"{period[:4]}{'01' if annual else period[4:]}01", "refYear": period[:4],
        "refMonth": "52" if annual else str(int(period[4:])), "period": period,
        "reporterCode": rcode, "reporterISO": reporter, "reporterDesc": rdesc,
        "flowCode": flow, "flowDesc": {"M": "Import", "X": "Export", "RM": "Re-import", "RX": "Re-export"}.get(flow, flow),
        "partnerCode": pcode, "partnerISO": partner, "partnerDesc": pdesc,
        "partner2Code": p2code, "partner2ISO": partner2, "partner2Desc": p2desc,
        "classificationCode": "H6", "classificationSearchCode": "HS", "isOriginalClassification": "True",
        "cmdCode": cmd, "cmdDesc": "Antimony oxides", "aggrLevel": "6", "isLeaf": "True",
        "customsCode": "C00", "customsDesc": "TOTAL CPC", "mosCode": "0", "motCode": "0", "motDesc": "TOTAL MOT",
        "qtyUnitCode": "8", "qtyUnitAbbr": "kg", "qty": "" if weight is None else str(weight), "isQtyEstimated": "False",
        "altQtyUnitCode": "-1", "altQtyUnitAbbr": "N/A", "altQty": "", "isAltQtyEstimated": "False",
        "netWgt": "" if weight is None else str(weight), "isNetWgtEstimated": "False", "grossWgt": "",
        "isGrossWgtEstimated": "False",
        "cifvalue": str(value) if flow in ("M", "RM") else "",
        "fobvalue": str(value) if flow in ("X", "RX") else "",
        "primaryValue": str(value), "legacyEstimationFlag": "0", "isReported": "True", "isAggregate": "False",
    })
    r.update(overrides)
    return r


def write(path: Path, rows: list[dict], columns: list[str] | None = None, encoding: str = "utf-8") -> Path:
    columns = columns or COMTRADE_COLUMNS
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="", encoding=encoding) as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path
