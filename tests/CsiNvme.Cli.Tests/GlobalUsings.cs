global using CsiNvme.TestSupport;
global using NUnit.Framework;
