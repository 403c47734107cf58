"""What several mini-redirectors share: argument and path checks (args), share names
(shares), directory listings (listing), change notification (notify, inotify_watches),
security descriptors (security), quotas (quota), byte-range locks (locks), extended
attributes (eas), wildcard matching (wildcard), passwords (passwords) and connection set-up
deadlines (setup). Nothing here imports a mini-redirector."""
