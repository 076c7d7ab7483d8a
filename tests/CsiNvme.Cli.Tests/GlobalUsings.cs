global using CsiNvme.TestSupport;
global using NUnit.Framework;
global using CsiNvme.Volumes.Backends;
