"""Privacy-first measurement (#19): counted links, buffered click counting, machine traffic
apart, individual clicks only with consent, and what editors see. See docs/measurement.md."""
