"""Sending once: rendering an email from its template, and the marks of what was sent."""
