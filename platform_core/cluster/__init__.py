"""The k3s target: host access, K3s, MetalLB, Argo CD and the platform services on a cluster."""
