"""pykka actors that own the service's state: sessions, journal writes, knowledge dispatch."""
