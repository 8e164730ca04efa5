#!/usr/bin/env python3
"""A minimal BILLmanager-style payment module, written for billhost's tests (stdlib only).

Like the modules ISPsystem documents, it talks to the billing panel only through
`mgrctl -m billmgr FUNC name=value ... -o xml`: it reads the payment with `payment.info`,
marks it in progress with the gateway's id (`payment.setinpay`), and, when the gateway
reports the money received, credits it (`payment.setpaid`). A gateway retrying its
notification makes the module call `payment.setpaid` again with the same `externalid`.

Usage: pmtestpay.py MGRCTL ELID EXTERNALID [NOTIFICATIONS]
MGRCTL is the mgrctl program (a link named mgrctl to the billhost binary); NOTIFICATIONS is
how many times the gateway's "paid" notification arrives (default 1).
Exit status: 0 when the payment ends paid, 1 otherwise (the reason on stderr).
"""

import subprocess
import sys
import xml.etree.ElementTree as ET


def mgrctl(prog, func, **params):
    args = [prog, "-m", "billmgr", func]
    args += ["%s=%s" % (k, v) for k, v in params.items()]
    args += ["-o", "xml"]
    out = subprocess.run(args, capture_output=True, text=True)
    doc = ET.fromstring(out.stdout)
    err = doc.find("error")
    if err is not None:
        msg = err.findtext("msg", "")
        raise RuntimeError("%s: %s error: %s" % (func, err.get("type"), msg))
    if out.returncode != 0:
        raise RuntimeError("%s: mgrctl exited %d" % (func, out.returncode))
    return doc


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    prog, elid, externalid = argv[1], argv[2], argv[3]
    notifications = int(argv[4]) if len(argv) > 4 else 1
    try:
        pay = mgrctl(prog, "payment.info", elid=elid)
        # What a module builds its gateway request from.
        amount = pay.findtext("paymethodamount")
        currency = pay.findtext("currency_iso")
        number = pay.findtext("number")
        email = pay.findtext("account_email")
        method = pay.findtext("paymethod_name")
        if not amount or not currency or not number:
            raise RuntimeError("payment.info lacks amount, currency or number")
        if pay.findtext("status") not in ("1", "2"):
            raise RuntimeError("payment %s is not awaiting payment" % elid)
        print("paying %s %s for invoice %s of %s through %s" % (amount, currency, number, email, method))
        mgrctl(prog, "payment.setinpay", elid=elid, externalid=externalid,
               info="redirected to the gateway")
        for _ in range(notifications):
            mgrctl(prog, "payment.setpaid", elid=elid, externalid=externalid,
                   info="gateway %s: %s %s received" % (externalid, amount, currency))
        final = mgrctl(prog, "payment.info", elid=elid)
        if final.findtext("status") != "4":
            raise RuntimeError("payment %s ended with status %s" % (elid, final.findtext("status")))
        print("paid")
        return 0
    except (RuntimeError, ET.ParseError, OSError) as e:
        print("pmtestpay: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
