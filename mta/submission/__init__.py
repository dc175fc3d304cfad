"""Submission: the SMTP listener apps send to (`server`, `protocol`), AUTH against the users file
(`auth`), envelope address checks (`addresses`), headers we add (`headers`), and the handler that
signs and spools an accepted message before the 250 (`handler`)."""
