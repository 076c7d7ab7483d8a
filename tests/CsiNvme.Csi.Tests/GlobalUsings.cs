global using CsiNvme.Volumes.Backends;
