"""The notifier: Alertmanager's model (routes, matchers, inhibition, time intervals, receivers) and
its configuration format, so an existing `alertmanager.yml` works unchanged."""
