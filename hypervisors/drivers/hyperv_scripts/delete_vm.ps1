# delete_vm: turns a VM off, removes it and the VHDX files PureBoot made for
# it (named "<VMId>-disk<N>.vhdx"); other disks attached to it are kept.
# Parameters ($p): {"id": VMId}.
# Returns: {"id": VMId, "removed": [paths of the deleted VHDX files]}
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = [Text.Encoding]::UTF8
trap { $m = "$($_.Exception.Message)"; if ($m -notlike 'PUREBOOT|*') { $m = 'PUREBOOT|{0}|{1}' -f $_.CategoryInfo.Category, $m }; throw $m }
$vm = Get-VM -Id $p.id -ErrorAction SilentlyContinue
if (-not $vm) { throw "PUREBOOT|NotFound|no VM with id $($p.id)" }
if ("$($vm.State)" -ne 'Off') { Stop-VM -VM $vm -TurnOff -Confirm:$false }
$ours = @(Get-VMHardDiskDrive -VM $vm | Where-Object { $_.Path -and
    (Split-Path -Leaf $_.Path) -like "$($vm.VMId)-disk*.vhdx" } | ForEach-Object Path)
Remove-VM -VM $vm -Force
foreach ($f in $ours) { Remove-Item -LiteralPath $f -Force }
ConvertTo-Json -Compress -Depth 5 -InputObject ([ordered]@{id = "$($vm.VMId)"; removed = $ours})
