"""Real servers for the tests (OpenSSH sshd, ...), started on loopback."""
