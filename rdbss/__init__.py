"""rdbss: a user-space network redirector modeled on Windows RDBSS and its mini-redirectors."""
