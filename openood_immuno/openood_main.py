"""``python -m openood_immuno.openood_main``, the launcher's command before 0.2, kept so existing
scripts run: the launcher is :mod:`openood_immuno.openood.main` (``openood-immuno openood-main``)."""
from openood_immuno.openood.main import main

if __name__ == "__main__":
    main()
