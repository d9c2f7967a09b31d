"""Measuring on the device over a serial link: protocol, link, session, reports."""
